// Fuzzes the replay service's own InsertRequest wire parser (replay/insert_batch.h), which reads
// every Insert message straight from the slices gRPC received it in: the input is the message's
// bytes, cut into pieces at points chosen by a hash of the bytes. Checks, against protobuf's
// own parser as the reference:
//   - ParseInsertRequest accepts exactly the messages protobuf accepts and reads the same
//     fields (the reference is a copy of the InsertRequest, NamedTensor and Tensor descriptors
//     whose string fields are bytes, since the replay parser, like the table, takes names as
//     bytes and leaves UTF-8 to the name checks), refusing with INVALID_ARGUMENT; the one
//     difference allowed is a five-byte tag above 32 bits (see IsOverlongTagRefusal);
//   - EncodeInsertRequest writes the bytes protobuf serializes for the batch, in
//     EncodedInsertRequestSize bytes, EncodeInsertRequestAround the same bytes around its gaps,
//     and parsing them gives the batch back;
//   - CheckInsertColumn says what ViewAndCheckTensorProto says of the same tensor;
//   - DropFront of a batch whose columns passed the checks views the right rows.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/logging.h"
#include "common/tensor.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/message.h"
#include "proto/replay.pb.h"
#include "proto/tensor.pb.h"
#include "replay/insert_batch.h"

namespace prl::fuzz {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::DynamicMessageFactory;
using google::protobuf::FieldDescriptor;
using google::protobuf::FieldDescriptorProto;
using google::protobuf::FileDescriptorProto;
using google::protobuf::Message;
using google::protobuf::Reflection;
using replay::InsertBatch;
using replay::InsertColumn;
using replay::ScatteredBytes;

// The reference: InsertRequest with its string fields as bytes, in a pool of its own.
class Reference {
 public:
  Reference() {
    FileDescriptorProto tensor_file, replay_file;
    v1::Tensor::descriptor()->file()->CopyTo(&tensor_file);
    v1::InsertRequest::descriptor()->file()->CopyTo(&replay_file);
    StringsToBytes(&tensor_file, "NamedTensor");
    StringsToBytes(&replay_file, "InsertRequest");
    PRL_CHECK(pool_.BuildFile(tensor_file) != nullptr);
    PRL_CHECK(pool_.BuildFile(replay_file) != nullptr);
    request_ = pool_.FindMessageTypeByName("prl.v1.InsertRequest");
    PRL_CHECK(request_ != nullptr);
    prototype_ = factory_.GetPrototype(request_);
  }

  std::unique_ptr<Message> New() const { return std::unique_ptr<Message>(prototype_->New()); }

  // The batch protobuf reads from `message`, or false when protobuf refuses it.
  bool Parse(absl::string_view message, InsertBatch* batch,
             std::unique_ptr<Message>* holder) const {
    *holder = New();
    Message& request = **holder;
    if (!request.ParseFromArray(message.data(), static_cast<int>(message.size()))) return false;
    const Reflection& r = *request.GetReflection();
    *batch = InsertBatch();
    batch->table = r.GetString(request, Field(request_, "table"));
    const FieldDescriptor* columns = Field(request_, "columns");
    for (int i = 0; i < r.FieldSize(request, columns); ++i) {
      const Message& named = r.GetRepeatedMessage(request, columns, i);
      const Reflection& nr = *named.GetReflection();
      InsertColumn& column = batch->columns.emplace_back();
      column.name = nr.GetString(named, Field(named.GetDescriptor(), "name"));
      const Message& tensor = nr.GetMessage(named, Field(named.GetDescriptor(), "tensor"));
      const Reflection& tr = *tensor.GetReflection();
      const Descriptor* t = tensor.GetDescriptor();
      column.dtype = tr.GetEnumValue(tensor, Field(t, "dtype"));
      for (int d = 0; d < tr.FieldSize(tensor, Field(t, "shape")); ++d) {
        column.shape.push_back(tr.GetRepeatedInt64(tensor, Field(t, "shape"), d));
      }
      // views the holder's bytes, as the replay parser views the message's.
      column.data.Append(tr.GetStringReference(tensor, Field(t, "data"), nullptr));
    }
    const FieldDescriptor* priorities = Field(request_, "priorities");
    for (int i = 0; i < r.FieldSize(request, priorities); ++i) {
      batch->priorities.push_back(r.GetRepeatedDouble(request, priorities, i));
    }
    batch->return_keys = r.GetBool(request, Field(request_, "return_keys"));
    batch->max_wait_ms = r.GetInt64(request, Field(request_, "max_wait_ms"));
    return true;
  }

  // What protobuf serializes for `batch` (every column with its tensor set).
  std::string Serialize(const InsertBatch& batch) const {
    std::unique_ptr<Message> request = New();
    const Reflection& r = *request->GetReflection();
    r.SetString(request.get(), Field(request_, "table"), batch.table);
    for (const InsertColumn& column : batch.columns) {
      Message* named = r.AddMessage(request.get(), Field(request_, "columns"));
      const Reflection& nr = *named->GetReflection();
      nr.SetString(named, Field(named->GetDescriptor(), "name"), column.name);
      Message* tensor = nr.MutableMessage(named, Field(named->GetDescriptor(), "tensor"));
      const Reflection& tr = *tensor->GetReflection();
      const Descriptor* t = tensor->GetDescriptor();
      tr.SetEnumValue(tensor, Field(t, "dtype"), column.dtype);
      for (int64_t d : column.shape) tr.AddInt64(tensor, Field(t, "shape"), d);
      tr.SetString(tensor, Field(t, "data"), column.data.ToString());
    }
    for (double p : batch.priorities) r.AddDouble(request.get(), Field(request_, "priorities"), p);
    r.SetBool(request.get(), Field(request_, "return_keys"), batch.return_keys);
    r.SetInt64(request.get(), Field(request_, "max_wait_ms"), batch.max_wait_ms);
    return request->SerializeAsString();
  }

 private:
  static void StringsToBytes(FileDescriptorProto* file, absl::string_view message) {
    for (auto& type : *file->mutable_message_type()) {
      if (type.name() != message) continue;
      for (auto& field : *type.mutable_field()) {
        if (field.type() == FieldDescriptorProto::TYPE_STRING) {
          field.set_type(FieldDescriptorProto::TYPE_BYTES);
        }
      }
    }
  }

  static const FieldDescriptor* Field(const Descriptor* message, const char* name) {
    const FieldDescriptor* field = message->FindFieldByName(name);
    PRL_CHECK(field != nullptr) << message->full_name() << "." << name;
    return field;
  }

  DescriptorPool pool_;
  DynamicMessageFactory factory_;
  const Descriptor* request_ = nullptr;
  const Message* prototype_ = nullptr;
};

// `bytes` in up to five pieces, cut where a hash of the bytes says.
ScatteredBytes Split(absl::string_view bytes) {
  uint64_t hash = 14695981039346656037ull;  // FNV-1a
  for (char c : bytes) hash = (hash ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  std::vector<size_t> cuts(hash % 5);
  for (size_t& cut : cuts) {
    hash = hash * 6364136223846793005ull + 1442695040888963407ull;
    cut = static_cast<size_t>((hash >> 11) % (bytes.size() + 1));
  }
  std::sort(cuts.begin(), cuts.end());
  ScatteredBytes pieces;
  size_t from = 0;
  for (size_t cut : cuts) {
    pieces.Append(bytes.substr(from, cut - from));
    from = cut;
  }
  pieces.Append(bytes.substr(from));
  return pieces;
}

bool SameBits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), 8 * a.size()) == 0);
}

// The first field in which two batches differ, or "" when they hold the same fields.
std::string Difference(const InsertBatch& a, const InsertBatch& b) {
  if (a.table != b.table) return "table";
  if (!SameBits(a.priorities, b.priorities)) return "priorities";
  if (a.return_keys != b.return_keys) return "return_keys";
  if (a.max_wait_ms != b.max_wait_ms) return "max_wait_ms";
  if (a.columns.size() != b.columns.size()) return "the number of columns";
  for (size_t i = 0; i < a.columns.size(); ++i) {
    const InsertColumn& x = a.columns[i];
    const InsertColumn& y = b.columns[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape ||
        x.data.ToString() != y.data.ToString()) {
      return absl::StrCat("columns[", i, "]");
    }
  }
  return "";
}

v1::Tensor TensorOf(const InsertColumn& column) {
  v1::Tensor tensor;
  tensor.set_dtype(static_cast<v1::Tensor::DType>(column.dtype));
  for (int64_t d : column.shape) tensor.add_shape(d);
  tensor.set_data(column.data.ToString());
  return tensor;
}

// CheckInsertColumn against ViewAndCheckTensorProto; true when every column passed the
// general checks (any dtype and shape, finite).
bool CheckColumns(const InsertBatch& batch) {
  bool all_ok = true;
  for (size_t i = 0; i < batch.columns.size(); ++i) {
    const InsertColumn& column = batch.columns[i];
    const v1::Tensor tensor = TensorOf(column);
    const std::string name = absl::StrCat("columns[", i, "]");
    const TensorSpec specs[] = {{name, std::nullopt, std::nullopt, true},
                                {name, DType::kFloat32, std::vector<int64_t>{-1, 3}, true}};
    for (const TensorSpec& spec : specs) {
      const absl::StatusOr<DType> checked = replay::CheckInsertColumn(column, spec);
      const absl::StatusOr<TensorView> reference = ViewAndCheckTensorProto(tensor, spec);
      PRL_CHECK(checked.status() == reference.status())
          << "CheckInsertColumn: " << checked.status()
          << "; ViewAndCheckTensorProto: " << reference.status();
      if (checked.ok()) {
        PRL_CHECK(*checked == reference->dtype);
      } else {
        PRL_CHECK(checked.status().code() == absl::StatusCode::kInvalidArgument);
      }
    }
    all_ok = all_ok && replay::CheckInsertColumn(column, specs[0]).ok();
  }
  return all_ok;
}

// DropFront of a consistent batch: the rows after the dropped ones, in the same pieces' bytes.
void CheckDropFront(const InsertBatch& batch) {
  const int64_t rows = batch.rows();
  if (rows <= 0) return;
  for (const InsertColumn& column : batch.columns) {
    if (column.shape.empty() || column.shape[0] != rows) return;
  }
  if (!batch.priorities.empty() && static_cast<int64_t>(batch.priorities.size()) != rows) return;
  for (int64_t drop : {int64_t{0}, int64_t{1}, rows / 2, rows}) {
    const InsertBatch rest = batch.DropFront(drop);
    PRL_CHECK(rest.rows() == rows - drop);
    PRL_CHECK(rest.table == batch.table && rest.columns.size() == batch.columns.size());
    for (size_t i = 0; i < batch.columns.size(); ++i) {
      const std::string all = batch.columns[i].data.ToString();
      const size_t row_bytes = all.size() / static_cast<size_t>(rows);
      PRL_CHECK(rest.columns[i].data.ToString() == all.substr(row_bytes * drop));
      PRL_CHECK(rest.columns[i].shape[0] == rows - drop);
    }
    if (!batch.priorities.empty()) {
      PRL_CHECK(SameBits(rest.priorities, std::vector<double>(batch.priorities.begin() + drop,
                                                              batch.priorities.end())));
    }
  }
}

// The encoders on `batch`: protobuf's bytes, the announced size, the same bytes around gaps,
// and a parse of them that gives the batch back.
void CheckEncoding(const InsertBatch& batch, const Reference& reference, uint64_t hash) {
  const int64_t size = replay::EncodedInsertRequestSize(batch);
  // exactly the announced size, so that AddressSanitizer sees any write past it.
  std::vector<char> out(size);
  replay::EncodeInsertRequest(batch, out.data());
  const std::string encoded(out.data(), out.size());
  PRL_CHECK(encoded == reference.Serialize(batch)) << "EncodeInsertRequest differs from protobuf";

  InsertBatch again;
  const absl::Status parsed = replay::ParseInsertRequest(Split(encoded), &again);
  PRL_CHECK(parsed.ok()) << parsed;
  const std::string differs = Difference(batch, again);
  PRL_CHECK(differs.empty()) << "the re-encoded batch differs in " << differs;

  // around gaps: the columns with at least min_gap data bytes are left out.
  const int64_t min_gap = static_cast<int64_t>(hash % 64);
  const int64_t around_size = replay::EncodedInsertRequestSize(batch, min_gap);
  std::vector<char> around(around_size);
  std::vector<replay::DataGap> gaps;
  const int64_t written = replay::EncodeInsertRequestAround(batch, min_gap, around.data(), &gaps);
  PRL_CHECK(written == around_size) << written << " bytes written, " << around_size << " announced";
  std::string joined;
  int64_t from = 0;
  for (const replay::DataGap& gap : gaps) {
    PRL_CHECK(gap.offset >= from && gap.offset <= written);
    joined.append(around.data() + from, gap.offset - from);
    joined += gap.data->ToString();
    from = gap.offset;
  }
  joined.append(around.data() + from, written - from);
  PRL_CHECK(joined == encoded) << "EncodeInsertRequestAround differs around its gaps";
}

// Whether `refusal` is the one known difference from protobuf: a tag of five bytes whose value
// needs more than 32 bits. Such a tag names no field; protobuf's tag reader drops the bits past
// the 32nd and reads on, the replay parser refuses the message ("invalid tag N").
bool IsOverlongTagRefusal(const absl::Status& refusal) {
  const absl::string_view message = refusal.message();
  constexpr absl::string_view kInvalidTag = "invalid tag ";
  const size_t at = message.find(kInvalidTag);
  if (at == absl::string_view::npos) return false;
  absl::string_view digits = message.substr(at + kInvalidTag.size());
  digits = digits.substr(0, digits.find(' '));
  uint64_t tag;
  return absl::SimpleAtoi(digits, &tag) && (tag >> 32) != 0;
}

void TestOneInput(absl::string_view message) {
  static Reference reference;
  const ScatteredBytes pieces = Split(message);
  InsertBatch batch;
  const absl::Status parsed = replay::ParseInsertRequest(pieces, &batch);
  InsertBatch expected;
  std::unique_ptr<Message> holder;
  const bool reference_ok = reference.Parse(message, &expected, &holder);
  if (!parsed.ok() && reference_ok && IsOverlongTagRefusal(parsed)) return;
  PRL_CHECK(parsed.ok() == reference_ok)
      << "ParseInsertRequest: " << parsed << "; protobuf " << (reference_ok ? "accepts" : "refuses")
      << " the message";
  if (!parsed.ok()) {
    PRL_CHECK(parsed.code() == absl::StatusCode::kInvalidArgument) << parsed;
    return;
  }
  const std::string differs = Difference(batch, expected);
  PRL_CHECK(differs.empty()) << "ParseInsertRequest differs from protobuf in " << differs;
  uint64_t hash = 0;
  for (char c : message) hash = hash * 31 + static_cast<uint8_t>(c);
  CheckEncoding(batch, reference, hash);
  if (CheckColumns(batch)) CheckDropFront(batch);
}

}  // namespace
}  // namespace prl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  prl::fuzz::TestOneInput(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
