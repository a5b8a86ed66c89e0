#include "replay/insert_batch.h"

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "google/protobuf/unknown_field_set.h"
#include "gtest/gtest.h"

namespace prl::replay {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// A request with every dtype, a scalar column, priorities, return_keys and max_wait_ms.
v1::InsertRequest FullRequest() {
  v1::InsertRequest request;
  request.set_table("transitions");
  v1::NamedTensor* obs = request.add_columns();
  obs->set_name("obs");
  std::vector<float> values;
  for (int i = 0; i < 6; ++i) values.push_back(0.5f * static_cast<float>(i) - 1.0f);
  TensorToProto(HostTensor::FromFloats({2, 3}, values).view(), obs->mutable_tensor());
  v1::NamedTensor* id = request.add_columns();
  id->set_name("id");
  HostTensor ids = *HostTensor::Zeros(DType::kInt64, {2});
  ids.mutable_data<int64_t>()[0] = -7;
  ids.mutable_data<int64_t>()[1] = int64_t{1} << 40;
  TensorToProto(ids.view(), id->mutable_tensor());
  v1::NamedTensor* image = request.add_columns();
  image->set_name("image");
  HostTensor pixels = *HostTensor::Zeros(DType::kUInt8, {2, 4, 4, 3});
  for (size_t i = 0; i < pixels.byte_size(); ++i) pixels.mutable_data<uint8_t>()[i] = i * 7;
  TensorToProto(pixels.view(), image->mutable_tensor());
  v1::NamedTensor* reward = request.add_columns();
  reward->set_name("reward");
  TensorToProto(HostTensor::FromFloats({2}, {1.0f, -2.0f}).view(), reward->mutable_tensor());
  request.add_priorities(0.25);
  request.add_priorities(3.0);
  request.set_return_keys(true);
  request.set_max_wait_ms(250);
  return request;
}

// The pieces of `bytes` cut at `cuts` (increasing offsets).
std::vector<std::string> Cut(const std::string& bytes, const std::vector<size_t>& cuts) {
  std::vector<std::string> pieces;
  size_t from = 0;
  for (size_t cut : cuts) {
    pieces.push_back(bytes.substr(from, cut - from));
    from = cut;
  }
  pieces.push_back(bytes.substr(from));
  return pieces;
}

ScatteredBytes Scatter(const std::vector<std::string>& pieces) {
  ScatteredBytes bytes;
  for (const std::string& piece : pieces) bytes.Append(piece);
  return bytes;
}

// Expects `batch` to hold what `request` holds.
void ExpectSame(const InsertBatch& batch, const v1::InsertRequest& request) {
  EXPECT_EQ(batch.table, request.table());
  ASSERT_EQ(batch.columns.size(), static_cast<size_t>(request.columns_size()));
  for (int i = 0; i < request.columns_size(); ++i) {
    const v1::Tensor& tensor = request.columns(i).tensor();
    EXPECT_EQ(batch.columns[i].name, request.columns(i).name()) << i;
    EXPECT_EQ(batch.columns[i].dtype, tensor.dtype()) << i;
    EXPECT_THAT(batch.columns[i].shape, ElementsAreArray(tensor.shape())) << i;
    EXPECT_EQ(batch.columns[i].data.ToString(), tensor.data()) << i;
  }
  EXPECT_THAT(batch.priorities, ElementsAreArray(request.priorities()));
  EXPECT_EQ(batch.return_keys, request.return_keys());
  EXPECT_EQ(batch.max_wait_ms, request.max_wait_ms());
}

// Parses `bytes` with protobuf and with ParseInsertRequest (whole, split in two at every offset,
// and one byte per piece) and expects both to accept it and agree.
void ExpectParsesLikeProtobuf(const std::string& bytes) {
  v1::InsertRequest request;
  ASSERT_TRUE(request.ParseFromString(bytes)) << "protobuf rejects the test input";
  std::vector<std::vector<std::string>> splits = {{bytes}};
  for (size_t cut = 1; cut < bytes.size(); ++cut) splits.push_back(Cut(bytes, {cut}));
  std::vector<std::string> bytewise;
  for (char c : bytes) bytewise.emplace_back(1, c);
  splits.push_back(bytewise);
  for (const auto& pieces : splits) {
    InsertBatch batch;
    absl::Status s = ParseInsertRequest(Scatter(pieces), &batch);
    ASSERT_TRUE(s.ok()) << s << " with " << pieces.size() << " pieces";
    ExpectSame(batch, request);
  }
}

TEST(InsertBatchTest, EncodesExactlyWhatProtobufSerializes) {
  const v1::InsertRequest request = FullRequest();
  const InsertBatch batch = InsertBatch::FromProto(request);
  std::string encoded(EncodedInsertRequestSize(batch), '\0');
  EncodeInsertRequest(batch, encoded.data());
  EXPECT_EQ(encoded, request.SerializeAsString());

  // defaults are left out, as protobuf leaves them out; a negative dtype is sign-extended.
  v1::InsertRequest sparse;
  sparse.add_columns()->mutable_tensor()->set_dtype(static_cast<v1::Tensor::DType>(-3));
  const InsertBatch sparse_batch = InsertBatch::FromProto(sparse);
  std::string sparse_encoded(EncodedInsertRequestSize(sparse_batch), '\0');
  EncodeInsertRequest(sparse_batch, sparse_encoded.data());
  EXPECT_EQ(sparse_encoded, sparse.SerializeAsString());
}

TEST(InsertBatchTest, EncodesDataHeldInPieces) {
  const v1::InsertRequest request = FullRequest();
  InsertBatch batch = InsertBatch::FromProto(request);
  // the image column from three buffers of the caller's.
  const std::string& pixels = request.columns(2).tensor().data();
  std::vector<std::string> keep = Cut(pixels, {5, 50});
  batch.columns[2].data.Clear();
  for (const std::string& piece : keep) batch.columns[2].data.Append(piece);
  std::string encoded(EncodedInsertRequestSize(batch), '\0');
  EncodeInsertRequest(batch, encoded.data());
  EXPECT_EQ(encoded, request.SerializeAsString());
}

TEST(InsertBatchTest, EncodesAroundLargePayloadsForAScatterGatherSend) {
  const v1::InsertRequest request = FullRequest();
  const InsertBatch batch = InsertBatch::FromProto(request);
  // obs has 24 bytes, id 16, image 96, reward 8: 20 leaves out obs and image.
  for (const int64_t min_gap_bytes : {int64_t{0}, int64_t{20}, int64_t{1000}}) {
    std::string frame(EncodedInsertRequestSize(batch, min_gap_bytes), '\0');
    std::vector<DataGap> gaps;
    EXPECT_EQ(EncodeInsertRequestAround(batch, min_gap_bytes, frame.data(), &gaps),
              static_cast<int64_t>(frame.size()));
    std::string sent;
    int64_t from = 0;
    for (const DataGap& gap : gaps) {
      sent += frame.substr(from, gap.offset - from) + gap.data->ToString();
      from = gap.offset;
    }
    sent += frame.substr(from);
    EXPECT_EQ(sent, request.SerializeAsString()) << min_gap_bytes;
    const size_t left_out = min_gap_bytes == 0 ? 4 : min_gap_bytes == 20 ? 2 : 0;
    ASSERT_EQ(gaps.size(), left_out) << min_gap_bytes;
    if (left_out == 2) {
      EXPECT_EQ(gaps[0].data, &batch.columns[0].data);
      EXPECT_EQ(gaps[1].data, &batch.columns[2].data);
    }
  }
}

TEST(InsertBatchTest, ParsesFieldsSplitAcrossPieces) {
  ExpectParsesLikeProtobuf(FullRequest().SerializeAsString());
}

TEST(InsertBatchTest, PayloadsAreViewsOfTheReceivedPieces) {
  const std::string bytes = FullRequest().SerializeAsString();
  const std::vector<std::string> pieces = Cut(bytes, {40, 150});
  InsertBatch batch;
  ASSERT_TRUE(ParseInsertRequest(Scatter(pieces), &batch).ok());
  for (const InsertColumn& column : batch.columns) {
    for (absl::string_view piece : column.data.pieces()) {
      bool inside = false;
      for (const std::string& p : pieces) {
        inside |= piece.data() >= p.data() && piece.data() + piece.size() <= p.data() + p.size();
      }
      EXPECT_TRUE(inside) << column.name;
    }
  }
  // the image column (192 bytes from offset 109) spans the cut at 150.
  EXPECT_EQ(batch.columns[2].data.pieces().size(), 2u);
}

TEST(InsertBatchTest, SkipsUnknownFieldsOfEveryWireTypeAtEveryLevel) {
  v1::InsertRequest request = FullRequest();
  const auto add_unknowns = [](google::protobuf::Message* message) {
    google::protobuf::UnknownFieldSet* unknown =
        message->GetReflection()->MutableUnknownFields(message);
    unknown->AddVarint(90, 150);
    unknown->AddFixed64(91, 0x0102030405060708);
    unknown->AddLengthDelimited(92, "skipped");
    unknown->AddFixed32(93, 7);
    google::protobuf::UnknownFieldSet* group = unknown->AddGroup(94);
    group->AddVarint(1, 1);
    group->AddGroup(2)->AddLengthDelimited(3, "nested");
  };
  add_unknowns(&request);
  add_unknowns(request.mutable_columns(1));
  add_unknowns(request.mutable_columns(1)->mutable_tensor());
  const std::string bytes = request.SerializeAsString();
  ExpectParsesLikeProtobuf(bytes);
  InsertBatch batch;
  ASSERT_TRUE(ParseInsertRequest(ScatteredBytes(bytes), &batch).ok());
  ExpectSame(batch, FullRequest());
}

TEST(InsertBatchTest, AcceptsWhatProtobufAccepts) {
  const std::string full = FullRequest().SerializeAsString();
  // unpacked repeated scalars: shape [2, 3] as two varints, priorities as two fixed64.
  std::string unpacked = "\x12\x15\x0a\x01x\x12\x10\x08\x01\x10\x02\x10\x01\x1a\x08";
  unpacked += std::string(8, '\0');
  unpacked += "\x19";
  unpacked += std::string("\x00\x00\x00\x00\x00\x00\xf0\x3f", 8);
  unpacked += "\x19";
  unpacked += std::string("\x00\x00\x00\x00\x00\x00\x00\x40", 8);
  ExpectParsesLikeProtobuf(unpacked);
  // a known field with another wire type is an unknown field: table as a varint.
  ExpectParsesLikeProtobuf(std::string("\x08\x05", 2) + full);
  // singular fields: the last value wins; a second tensor merges into the first (shape appends,
  // dtype and data replaced).
  ExpectParsesLikeProtobuf(full + std::string("\x0a\x05other\x20\x00", 9));
  ExpectParsesLikeProtobuf(
      std::string("\x12\x0f\x0a\x01x\x12\x04\x10\x02\x1a\x00\x12\x04\x08\x03\x10\x03", 17));
  // an empty message.
  ExpectParsesLikeProtobuf("");
}

TEST(InsertBatchTest, RejectsWhatProtobufRejects) {
  const std::vector<std::string> malformed = {
      std::string("\x0a\x05tab", 5),  // length past the end
      std::string("\x0a", 1),         // truncated length
      std::string(11, '\xff'),        // overlong varint tag
      // a tag in six bytes, zero-padded (its value fits in 32 bits): protobuf reads tags of at
      // most five (found by the insert_request fuzzer)
      std::string("\x81\x81\x81\x81\x81\x00\x00\x00\x00\x00\x00\x00\x00\x00", 14),
      std::string("\x20\xff\xff", 3),              // truncated varint
      std::string("\x00\x01", 2),                  // tag 0 (field 0)
      std::string("\x0e\x01", 2),                  // wire type 6
      std::string("\x0f\x01", 2),                  // wire type 7
      std::string("\x24", 1),                      // end of group 4 outside a group
      std::string("\x23\x08\x01", 3),              // unterminated group
      std::string("\x23\x2c", 2),                  // group 4 ends as group 5
      std::string("\x1a\x03\x00\x00\x00", 5),      // packed doubles, not a multiple of 8
      std::string("\x19\x00\x00", 3),              // truncated fixed64
      std::string("\x12\x04\x12\x05\x1a\x01", 6),  // tensor longer than its column
      std::string("\x12\x03\x12\x01\x10", 5),      // shape varint cut by its tensor's end
      std::string("\x12\x04\x12\x02\x1a\x05", 6),  // data longer than its tensor
  };
  for (const std::string& bytes : malformed) {
    v1::InsertRequest request;
    EXPECT_FALSE(request.ParseFromString(bytes))
        << "protobuf accepts test input " << absl::CHexEscape(bytes);
    InsertBatch batch;
    absl::Status s = ParseInsertRequest(ScatteredBytes(bytes), &batch);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << absl::CHexEscape(bytes) << s;
    EXPECT_THAT(s.message(), HasSubstr("malformed InsertRequest")) << absl::CHexEscape(bytes);
  }
}

TEST(InsertBatchTest, TruncatedMessagesAreRejectedOrParsedAsProtobufDoes) {
  const std::string full = FullRequest().SerializeAsString();
  int rejected = 0;
  for (size_t length = 0; length < full.size(); ++length) {
    const std::string prefix = full.substr(0, length);
    v1::InsertRequest request;
    const bool protobuf_ok = request.ParseFromString(prefix);
    InsertBatch batch;
    // split the prefix too, so truncation meets piece boundaries.
    const std::vector<std::string> pieces = Cut(prefix, {length / 2});
    const absl::Status s = ParseInsertRequest(Scatter(pieces), &batch);
    EXPECT_EQ(s.ok(), protobuf_ok) << "prefix of " << length << " bytes: " << s;
    if (protobuf_ok && s.ok()) ExpectSame(batch, request);
    if (!s.ok()) {
      EXPECT_THAT(s.message(), HasSubstr("malformed InsertRequest"));
      ++rejected;
    }
  }
  EXPECT_GT(rejected, static_cast<int>(full.size() / 2));
}

TEST(InsertBatchTest, ErrorsNameTheField) {
  InsertBatch batch;
  absl::Status s =
      ParseInsertRequest(ScatteredBytes(std::string("\x12\x04\x12\x02\x1a\x05", 6)), &batch);
  EXPECT_THAT(s.message(), HasSubstr("'columns[0].tensor.data'"));
  s = ParseInsertRequest(ScatteredBytes(std::string("\x0a\x05tab", 5)), &batch);
  EXPECT_THAT(s.message(), HasSubstr("'table' has length 5 but only 3 bytes are left"));
}

TEST(InsertBatchTest, ReaderCopiesAcrossPieces) {
  const std::vector<std::string> pieces = {"ab", "c", "defg"};
  const ScatteredBytes bytes = Scatter(pieces);
  EXPECT_EQ(bytes.size(), 7);
  ScatteredReader reader(bytes);
  char out[7];
  reader.Read(3, out);
  reader.Read(0, out + 3);
  reader.Read(4, out + 3);
  EXPECT_EQ(std::string(out, 7), "abcdefg");
  EXPECT_EQ(bytes.ToString(), "abcdefg");
}

InsertColumn FloatColumn(const std::vector<float>& values, const std::vector<size_t>& cuts,
                         std::string* storage, std::vector<std::string>* pieces) {
  storage->assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  *pieces = Cut(*storage, cuts);
  InsertColumn column;
  column.name = "x";
  column.dtype = v1::Tensor::DTYPE_FLOAT32;
  column.shape = {static_cast<int64_t>(values.size())};
  column.data = Scatter(*pieces);
  return column;
}

TEST(InsertBatchTest, ChecksColumnsLikeTensorProtos) {
  const TensorSpec spec{"columns[0] ('x')", DType::kFloat32, std::vector<int64_t>{-1}, true};
  std::string storage;
  std::vector<std::string> pieces;
  // a NaN whose bytes straddle two pieces, and one after a piece ending mid-float.
  InsertColumn column =
      FloatColumn({1, 2, std::numeric_limits<float>::quiet_NaN(), 4}, {10}, &storage, &pieces);
  EXPECT_THAT(CheckInsertColumn(column, spec).status().message(),
              HasSubstr("field 'columns[0] ('x')': element 2 is NaN"));
  column =
      FloatColumn({1, 2, 3, std::numeric_limits<float>::infinity()}, {3, 6, 13}, &storage, &pieces);
  EXPECT_THAT(CheckInsertColumn(column, spec).status().message(), HasSubstr("element 3 is Inf"));
  column = FloatColumn({1, 2, 3, 4}, {1, 2, 3, 5, 9, 15}, &storage, &pieces);
  ASSERT_TRUE(CheckInsertColumn(column, spec).ok());
  EXPECT_EQ(*CheckInsertColumn(column, spec), DType::kFloat32);

  TensorSpec any_value = spec;
  any_value.require_finite = false;
  column = FloatColumn({std::numeric_limits<float>::quiet_NaN()}, {2}, &storage, &pieces);
  EXPECT_TRUE(CheckInsertColumn(column, any_value).ok());

  column.shape = {2};
  EXPECT_THAT(CheckInsertColumn(column, spec).status().message(),
              HasSubstr("shape [2] of float32 needs 8 bytes of data, got 4"));
  column.shape = {-1};
  EXPECT_THAT(CheckInsertColumn(column, spec).status().message(),
              HasSubstr("has negative dimension 0"));
  column.shape = {1, 1};
  EXPECT_THAT(CheckInsertColumn(column, spec).status().message(),
              HasSubstr("shape is [1, 1], must be [*]"));
  column.shape = {1};
  column.dtype = 0;
  EXPECT_THAT(CheckInsertColumn(column, spec).status().message(),
              HasSubstr("field 'columns[0] ('x').dtype': dtype 0 is not supported"));
  column.dtype = v1::Tensor::DTYPE_UINT8;
  column.shape = {4};
  EXPECT_THAT(CheckInsertColumn(column, spec).status().message(),
              HasSubstr("dtype is uint8, must be float32"));
}

TEST(InsertBatchTest, FromProtoViewsTheRequest) {
  const v1::InsertRequest request = FullRequest();
  const InsertBatch batch = InsertBatch::FromProto(request);
  ExpectSame(batch, request);
  ASSERT_EQ(batch.columns[0].data.pieces().size(), 1u);
  EXPECT_EQ(batch.columns[0].data.pieces()[0].data(), request.columns(0).tensor().data().data());
  EXPECT_THAT(batch.columns[2].shape, ElementsAre(2, 4, 4, 3));
}

TEST(InsertBatchTest, DropFrontViewsTheRemainingRowsOfEveryColumn) {
  const v1::InsertRequest request = FullRequest();
  InsertBatch batch = InsertBatch::FromProto(request);
  // the image column from pieces that do not line up with its rows (48 bytes each).
  const std::string& pixels = request.columns(2).tensor().data();
  const std::vector<std::string> pieces = Cut(pixels, {5, 50});
  batch.columns[2].data = Scatter(pieces);
  ASSERT_EQ(batch.rows(), 2);

  const InsertBatch rest = batch.DropFront(1);
  EXPECT_EQ(rest.rows(), 1);
  EXPECT_EQ(rest.table, "transitions");
  EXPECT_TRUE(rest.return_keys);
  EXPECT_EQ(rest.max_wait_ms, 250);
  EXPECT_THAT(rest.columns[0].shape, ElementsAre(1, 3));
  EXPECT_EQ(rest.columns[0].data.ToString(), request.columns(0).tensor().data().substr(12));
  EXPECT_EQ(rest.columns[1].data.ToString(), request.columns(1).tensor().data().substr(8));
  EXPECT_THAT(rest.columns[2].shape, ElementsAre(1, 4, 4, 3));
  EXPECT_EQ(rest.columns[2].data.ToString(), pixels.substr(48));
  EXPECT_EQ(rest.columns[2].data.pieces()[0].data(), pieces[1].data() + 43);  // a view
  EXPECT_THAT(rest.priorities, ElementsAre(3.0));
  EXPECT_EQ(batch.DropFront(2).rows(), 0);
  EXPECT_EQ(batch.DropFront(0).columns[2].data.ToString(), pixels);
}

TEST(InsertBatchTest, ColumnNameErrorsNameTheMissingAndUnexpectedColumns) {
  v1::TableConfig config;
  config.set_name("transitions");
  for (const char* name : {"obs", "action", "reward"}) config.add_signature()->set_name(name);
  InsertBatch batch;
  for (const char* name : {"obs", "action", "reward"}) batch.columns.emplace_back().name = name;
  EXPECT_TRUE(CheckInsertColumnNames(batch, config).ok());

  batch.columns[1].name = "actions";
  batch.columns.emplace_back().name = "obs";
  absl::Status s = CheckInsertColumnNames(batch, config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "field 'columns': missing 'action'; not columns of the table: 'actions'; given "
            "twice: 'obs' (table 'transitions' has columns 'obs', 'action', 'reward')");
  batch.columns.resize(1);
  EXPECT_THAT(CheckInsertColumnNames(batch, config).message(),
              HasSubstr("missing 'action', 'reward' (table"));
}

}  // namespace
}  // namespace prl::replay
