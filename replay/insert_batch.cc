#include "replay/insert_batch.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/field_error.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace prl::replay {
namespace {

// Field numbers and wire types of the messages in proto/replay.proto and proto/tensor.proto.
enum WireType {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5
};
constexpr uint32_t kRequestTable = 1, kRequestColumns = 2, kRequestPriorities = 3,
                   kRequestReturnKeys = 4, kRequestMaxWaitMs = 5;
constexpr uint32_t kNamedTensorName = 1, kNamedTensorTensor = 2;
constexpr uint32_t kTensorDType = 1, kTensorShape = 2, kTensorData = 3;
// Protobuf's default recursion limit, for skipping nested groups.
constexpr int kMaxGroupDepth = 100;

// A cursor over scattered bytes with a nested limit, like protobuf's CodedInputStream, that
// can hand out views of the bytes it passes.
class WireReader {
 public:
  explicit WireReader(const ScatteredBytes& bytes)
      : pieces_(bytes.pieces()), limit_(bytes.size()) {}

  int64_t position() const { return position_; }
  bool AtLimit() const { return position_ == limit_; }
  int64_t left() const { return limit_ - position_; }
  // Limits reading to the next `length` bytes (at most left()); returns the old limit.
  int64_t PushLimit(int64_t length) {
    const int64_t old = limit_;
    limit_ = position_ + length;
    return old;
  }
  void PopLimit(int64_t old) { limit_ = old; }

  // `max_bytes`: 10 for values; 5 for tags, whose longer (zero-padded) encodings protobuf's
  // tag reader refuses.
  bool ReadVarint(uint64_t* value, int max_bytes = 10) {
    uint64_t result = 0;
    // at most 10 bytes; bits past the 64th are dropped, as protobuf does.
    for (int shift = 0; shift < 7 * max_bytes; shift += 7) {
      char byte;
      if (!Read(1, &byte)) return false;
      result |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        *value = result;
        return true;
      }
    }
    return false;
  }
  bool ReadFixed64(uint64_t* value) {
    char bytes[8];
    if (!Read(8, bytes)) return false;
    std::memcpy(value, bytes, 8);  // little-endian, as the wire
    return true;
  }
  // Copies the next `n` bytes to `out`.
  bool Read(int64_t n, char* out) {
    return Pass(n, [&out](absl::string_view piece) {
      std::memcpy(out, piece.data(), piece.size());
      out += piece.size();
    });
  }
  // Appends views of the next `n` bytes to `out`.
  bool View(int64_t n, ScatteredBytes* out) {
    return Pass(n, [out](absl::string_view piece) { out->Append(piece); });
  }
  bool Skip(int64_t n) {
    return Pass(n, [](absl::string_view) {});
  }

 private:
  // Moves over the next `n` bytes, handing each piece of them to `visit`; false (having moved
  // nowhere) when fewer than `n` are left before the limit.
  template <typename Visit>
  bool Pass(int64_t n, Visit visit) {
    if (n < 0 || n > left()) return false;
    position_ += n;
    while (n > 0) {
      const absl::string_view piece = pieces_[piece_];
      const int64_t take = std::min<int64_t>(n, static_cast<int64_t>(piece.size() - offset_));
      visit(piece.substr(offset_, take));
      n -= take;
      offset_ += take;
      if (offset_ == piece.size()) {
        ++piece_;
        offset_ = 0;
      }
    }
    return true;
  }

  const std::vector<absl::string_view>& pieces_;
  size_t piece_ = 0;
  size_t offset_ = 0;  // into pieces_[piece_]
  int64_t position_ = 0;
  int64_t limit_;
};

// Parses one InsertRequest; errors name the field being read ("columns[1].tensor.data").
class InsertRequestParser {
 public:
  explicit InsertRequestParser(const ScatteredBytes& message) : in_(message) {}

  absl::Status Parse(InsertBatch* batch) {
    uint32_t field;
    int wire_type;
    while (true) {
      PRL_ASSIGN_OR_RETURN(const bool more, NextTag("", &field, &wire_type));
      if (!more) return absl::OkStatus();
      if (field == kRequestTable && wire_type == kLengthDelimited) {
        PRL_RETURN_IF_ERROR(ReadString("table", &batch->table));
      } else if (field == kRequestColumns && wire_type == kLengthDelimited) {
        const std::string name = absl::StrCat("columns[", batch->columns.size(), "]");
        int64_t length;
        PRL_RETURN_IF_ERROR(ReadLength(name, &length));
        const int64_t outer = in_.PushLimit(length);
        PRL_RETURN_IF_ERROR(ParseColumn(name, &batch->columns.emplace_back()));
        in_.PopLimit(outer);
      } else if (field == kRequestPriorities && wire_type == kFixed64) {
        PRL_RETURN_IF_ERROR(ReadDouble("priorities", &batch->priorities.emplace_back()));
      } else if (field == kRequestPriorities && wire_type == kLengthDelimited) {
        int64_t length;
        PRL_RETURN_IF_ERROR(ReadLength("priorities", &length));
        if (length % 8 != 0) {
          return Malformed(absl::StrCat("packed field 'priorities' has ", length,
                                        " bytes, not a multiple of 8"));
        }
        for (int64_t i = 0; i < length / 8; ++i) {
          PRL_RETURN_IF_ERROR(ReadDouble("priorities", &batch->priorities.emplace_back()));
        }
      } else if (field == kRequestReturnKeys && wire_type == kVarint) {
        uint64_t value;
        PRL_RETURN_IF_ERROR(ReadVarint("return_keys", &value));
        batch->return_keys = value != 0;
      } else if (field == kRequestMaxWaitMs && wire_type == kVarint) {
        uint64_t value;
        PRL_RETURN_IF_ERROR(ReadVarint("max_wait_ms", &value));
        batch->max_wait_ms = static_cast<int64_t>(value);
      } else {
        PRL_RETURN_IF_ERROR(SkipField(field, wire_type, 0));
      }
    }
  }

 private:
  // A NamedTensor, up to the current limit.
  absl::Status ParseColumn(const std::string& name, InsertColumn* column) {
    uint32_t field;
    int wire_type;
    while (true) {
      PRL_ASSIGN_OR_RETURN(const bool more, NextTag(name, &field, &wire_type));
      if (!more) return absl::OkStatus();
      if (field == kNamedTensorName && wire_type == kLengthDelimited) {
        PRL_RETURN_IF_ERROR(ReadString(name + ".name", &column->name));
      } else if (field == kNamedTensorTensor && wire_type == kLengthDelimited) {
        // a repeated singular message merges into the first, as protobuf parses it.
        const std::string tensor = name + ".tensor";
        int64_t length;
        PRL_RETURN_IF_ERROR(ReadLength(tensor, &length));
        const int64_t outer = in_.PushLimit(length);
        PRL_RETURN_IF_ERROR(ParseTensor(tensor, column));
        in_.PopLimit(outer);
      } else {
        PRL_RETURN_IF_ERROR(SkipField(field, wire_type, 0));
      }
    }
  }

  // A Tensor, up to the current limit, into `column`.
  absl::Status ParseTensor(const std::string& name, InsertColumn* column) {
    uint32_t field;
    int wire_type;
    uint64_t value;
    while (true) {
      PRL_ASSIGN_OR_RETURN(const bool more, NextTag(name, &field, &wire_type));
      if (!more) return absl::OkStatus();
      if (field == kTensorDType && wire_type == kVarint) {
        PRL_RETURN_IF_ERROR(ReadVarint(name + ".dtype", &value));
        column->dtype = static_cast<int32_t>(value);  // an open enum keeps unknown values
      } else if (field == kTensorShape && wire_type == kVarint) {
        PRL_RETURN_IF_ERROR(ReadVarint(name + ".shape", &value));
        column->shape.push_back(static_cast<int64_t>(value));
      } else if (field == kTensorShape && wire_type == kLengthDelimited) {
        int64_t length;
        PRL_RETURN_IF_ERROR(ReadLength(name + ".shape", &length));
        const int64_t outer = in_.PushLimit(length);
        while (!in_.AtLimit()) {
          PRL_RETURN_IF_ERROR(ReadVarint(name + ".shape", &value));
          column->shape.push_back(static_cast<int64_t>(value));
        }
        in_.PopLimit(outer);
      } else if (field == kTensorData && wire_type == kLengthDelimited) {
        int64_t length;
        PRL_RETURN_IF_ERROR(ReadLength(name + ".data", &length));
        column->data.Clear();
        in_.View(length, &column->data);
      } else {
        PRL_RETURN_IF_ERROR(SkipField(field, wire_type, 0));
      }
    }
  }

  // Reads the next tag of the message that ends at the current limit: false at its end.
  absl::StatusOr<bool> NextTag(absl::string_view message, uint32_t* field, int* wire_type) {
    if (in_.AtLimit()) return false;
    uint64_t tag;
    if (!in_.ReadVarint(&tag, /*max_bytes=*/5)) {
      return Malformed(
          absl::StrCat("truncated or overlong tag in ", message.empty() ? "the request" : message));
    }
    *field = static_cast<uint32_t>(tag >> 3);
    *wire_type = static_cast<int>(tag & 7);
    if (tag >> 3 == 0 || tag >> 32 != 0) {
      return Malformed(
          absl::StrCat("invalid tag ", tag, " in ", message.empty() ? "the request" : message));
    }
    return true;
  }

  absl::Status ReadVarint(absl::string_view field, uint64_t* value) {
    if (!in_.ReadVarint(value)) {
      return Malformed(absl::StrCat("truncated or overlong varint in field '", field, "'"));
    }
    return absl::OkStatus();
  }

  absl::Status ReadDouble(absl::string_view field, double* value) {
    uint64_t bits;
    if (!in_.ReadFixed64(&bits)) {
      return Malformed(absl::StrCat("truncated value in field '", field, "'"));
    }
    std::memcpy(value, &bits, sizeof(*value));
    return absl::OkStatus();
  }

  // A length prefix that must fit in what is left of the enclosing message.
  absl::Status ReadLength(absl::string_view field, int64_t* length) {
    uint64_t value;
    if (!in_.ReadVarint(&value)) {
      return Malformed(absl::StrCat("truncated length of field '", field, "'"));
    }
    if (value > static_cast<uint64_t>(in_.left())) {
      return Malformed(absl::StrCat("field '", field, "' has length ", value, " but only ",
                                    in_.left(), " bytes are left"));
    }
    *length = static_cast<int64_t>(value);
    return absl::OkStatus();
  }

  absl::Status ReadString(absl::string_view field, std::string* out) {
    int64_t length;
    PRL_RETURN_IF_ERROR(ReadLength(field, &length));
    out->resize(length);
    in_.Read(length, out->data());
    return absl::OkStatus();
  }

  // Skips the value of a field this parser does not read (unknown, or of another wire type).
  absl::Status SkipField(uint32_t field, int wire_type, int depth) {
    const std::string name = absl::StrCat("unknown field ", field);
    uint64_t value;
    switch (wire_type) {
      case kVarint:
        return ReadVarint(name, &value);
      case kFixed64:
        if (!in_.Skip(8)) return Malformed(absl::StrCat("truncated value of ", name));
        return absl::OkStatus();
      case kFixed32:
        if (!in_.Skip(4)) return Malformed(absl::StrCat("truncated value of ", name));
        return absl::OkStatus();
      case kLengthDelimited: {
        int64_t length;
        PRL_RETURN_IF_ERROR(ReadLength(name, &length));
        in_.Skip(length);
        return absl::OkStatus();
      }
      case kStartGroup: {
        if (depth >= kMaxGroupDepth) return Malformed("groups nested too deeply");
        uint32_t inner;
        int inner_type;
        while (true) {
          PRL_ASSIGN_OR_RETURN(const bool more, NextTag(name, &inner, &inner_type));
          if (!more) return Malformed(absl::StrCat("unterminated group ", field));
          if (inner_type == kEndGroup) {
            if (inner != field) return Malformed(absl::StrCat("group ", field, " ends as ", inner));
            return absl::OkStatus();
          }
          PRL_RETURN_IF_ERROR(SkipField(inner, inner_type, depth + 1));
        }
      }
      case kEndGroup:
        return Malformed(absl::StrCat("end of group ", field, " outside a group"));
      default:
        return Malformed(absl::StrCat("invalid wire type ", wire_type, " of field ", field));
    }
  }

  absl::Status Malformed(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed InsertRequest: ", what, " (at byte ", in_.position(), ")"));
  }

  WireReader in_;
};

// Wire-format writing: a varint, a tag, a length-delimited header.
int64_t VarintSize(uint64_t value) {
  int64_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

char* WriteVarint(uint64_t value, char* out) {
  while (value >= 0x80) {
    *out++ = static_cast<char>(value | 0x80);
    value >>= 7;
  }
  *out++ = static_cast<char>(value);
  return out;
}

char* WriteTag(uint32_t field, WireType wire_type, char* out) {
  return WriteVarint((field << 3) | wire_type, out);
}

// Size of a length-delimited field with `length` bytes of content (field numbers here are < 16,
// so their tags take one byte).
int64_t DelimitedSize(int64_t length) { return 1 + VarintSize(length) + length; }

// An enum travels as its int32 value sign-extended to 64 bits.
uint64_t EnumWire(int value) { return static_cast<uint64_t>(static_cast<int64_t>(value)); }

int64_t PackedShapeSize(const InsertColumn& column) {
  int64_t size = 0;
  for (int64_t d : column.shape) size += VarintSize(static_cast<uint64_t>(d));
  return size;
}

int64_t TensorSize(const InsertColumn& column) {
  int64_t size = 0;
  if (column.dtype != 0) size += 1 + VarintSize(EnumWire(column.dtype));
  if (!column.shape.empty()) size += DelimitedSize(PackedShapeSize(column));
  if (column.data.size() > 0) size += DelimitedSize(column.data.size());
  return size;
}

int64_t NamedTensorSize(const InsertColumn& column) {
  int64_t size = DelimitedSize(TensorSize(column));
  if (!column.name.empty()) size += DelimitedSize(static_cast<int64_t>(column.name.size()));
  return size;
}

char* WriteBytes(uint32_t field, absl::string_view bytes, char* out) {
  out = WriteTag(field, kLengthDelimited, out);
  out = WriteVarint(bytes.size(), out);
  std::memcpy(out, bytes.data(), bytes.size());
  return out + bytes.size();
}

// Where EncodeInsertRequestAround writes: the output, its start (for gap offsets) and, when
// `gaps` is set, the columns whose data it leaves out.
struct Encoder {
  char* out;
  const char* start;
  int64_t min_gap_bytes;
  std::vector<DataGap>* gaps;

  bool LeavesOut(const ScatteredBytes& data) const {
    return gaps != nullptr && data.size() >= min_gap_bytes;
  }

  void Column(const InsertColumn& column) {
    out = WriteTag(kRequestColumns, kLengthDelimited, out);
    out = WriteVarint(NamedTensorSize(column), out);
    if (!column.name.empty()) out = WriteBytes(kNamedTensorName, column.name, out);
    out = WriteTag(kNamedTensorTensor, kLengthDelimited, out);
    out = WriteVarint(TensorSize(column), out);
    if (column.dtype != 0) {
      out = WriteTag(kTensorDType, kVarint, out);
      out = WriteVarint(EnumWire(column.dtype), out);
    }
    if (!column.shape.empty()) {
      out = WriteTag(kTensorShape, kLengthDelimited, out);
      out = WriteVarint(PackedShapeSize(column), out);
      for (int64_t d : column.shape) out = WriteVarint(static_cast<uint64_t>(d), out);
    }
    if (column.data.size() > 0) {
      out = WriteTag(kTensorData, kLengthDelimited, out);
      out = WriteVarint(column.data.size(), out);
      if (LeavesOut(column.data)) {
        gaps->push_back({out - start, &column.data});
      } else {
        // the one copy of the payload.
        ScatteredReader(column.data).Read(column.data.size(), out);
        out += column.data.size();
      }
    }
  }
};

// NaN and Inf in float32 `data`, whose elements may straddle pieces.
absl::Status CheckFinite(const ScatteredBytes& data, absl::string_view field) {
  int64_t index = 0;
  auto check = [&](const char* bytes) {
    float value;
    std::memcpy(&value, bytes, sizeof(value));
    if (std::isfinite(value)) {
      ++index;
      return absl::OkStatus();
    }
    return QuotedFieldError(
        field, absl::StrCat("element ", index, " is ", std::isnan(value) ? "NaN" : "Inf",
                            "; only finite values are allowed"));
  };
  char carry[sizeof(float)];
  size_t carried = 0;
  for (absl::string_view piece : data.pieces()) {
    size_t i = 0;
    if (carried > 0) {
      i = std::min(sizeof(float) - carried, piece.size());
      std::memcpy(carry + carried, piece.data(), i);
      carried += i;
      if (carried < sizeof(float)) continue;
      PRL_RETURN_IF_ERROR(check(carry));
      carried = 0;
    }
    for (; i + sizeof(float) <= piece.size(); i += sizeof(float)) {
      PRL_RETURN_IF_ERROR(check(piece.data() + i));
    }
    carried = piece.size() - i;
    std::memcpy(carry, piece.data() + i, carried);
  }
  return absl::OkStatus();
}

}  // namespace

void ScatteredBytes::Append(absl::string_view piece) {
  if (piece.empty()) return;
  pieces_.push_back(piece);
  size_ += static_cast<int64_t>(piece.size());
}

void ScatteredBytes::Clear() {
  pieces_.clear();
  size_ = 0;
}

ScatteredBytes ScatteredBytes::Suffix(int64_t offset) const {
  PRL_CHECK(offset >= 0 && offset <= size_) << "suffix from " << offset << " of " << size_;
  ScatteredBytes out;
  for (absl::string_view piece : pieces_) {
    const int64_t length = static_cast<int64_t>(piece.size());
    if (offset >= length) {
      offset -= length;
      continue;
    }
    out.Append(piece.substr(offset));
    offset = 0;
  }
  return out;
}

std::string ScatteredBytes::ToString() const {
  std::string out(size_, '\0');
  ScatteredReader(*this).Read(size_, out.data());
  return out;
}

void ScatteredReader::Read(int64_t n, char* out) {
  while (n > 0) {
    PRL_CHECK(piece_ < pieces_->size()) << "read past the end of scattered bytes";
    const absl::string_view piece = (*pieces_)[piece_];
    const size_t take = std::min<size_t>(n, piece.size() - offset_);
    std::memcpy(out, piece.data() + offset_, take);
    out += take;
    n -= static_cast<int64_t>(take);
    offset_ += take;
    if (offset_ == piece.size()) {
      ++piece_;
      offset_ = 0;
    }
  }
}

InsertBatch InsertBatch::FromProto(const v1::InsertRequest& request) {
  InsertBatch batch;
  batch.table = request.table();
  batch.columns.resize(request.columns_size());
  for (int i = 0; i < request.columns_size(); ++i) {
    const v1::NamedTensor& from = request.columns(i);
    InsertColumn& column = batch.columns[i];
    column.name = from.name();
    column.dtype = from.tensor().dtype();
    column.shape.assign(from.tensor().shape().begin(), from.tensor().shape().end());
    column.data.Append(from.tensor().data());
  }
  batch.priorities.assign(request.priorities().begin(), request.priorities().end());
  batch.return_keys = request.return_keys();
  batch.max_wait_ms = request.max_wait_ms();
  return batch;
}

int64_t InsertBatch::rows() const {
  return columns.empty() || columns[0].shape.empty() ? 0 : columns[0].shape[0];
}

InsertBatch InsertBatch::DropFront(int64_t drop) const {
  const int64_t total = rows();
  PRL_CHECK(drop >= 0 && drop <= total) << "dropping " << drop << " of " << total << " rows";
  InsertBatch rest;
  rest.table = table;
  rest.return_keys = return_keys;
  rest.max_wait_ms = max_wait_ms;
  rest.columns.reserve(columns.size());
  for (const InsertColumn& column : columns) {
    PRL_CHECK(!column.shape.empty() && column.shape[0] == total && column.data.size() % total == 0)
        << "column '" << column.name << "' does not have " << total << " rows";
    InsertColumn& out = rest.columns.emplace_back();
    out.name = column.name;
    out.dtype = column.dtype;
    out.shape = column.shape;
    out.shape[0] = total - drop;
    out.data = column.data.Suffix(column.data.size() / total * drop);
  }
  if (!priorities.empty()) {
    PRL_CHECK(static_cast<int64_t>(priorities.size()) == total) << "priorities do not match rows";
    rest.priorities.assign(priorities.begin() + drop, priorities.end());
  }
  return rest;
}

absl::Status CheckInsertColumnNames(const InsertBatch& batch, const v1::TableConfig& config) {
  std::vector<std::string> missing, unknown, twice;
  std::vector<int> seen(config.signature_size(), 0);
  for (const InsertColumn& column : batch.columns) {
    int c = 0;
    while (c < config.signature_size() && config.signature(c).name() != column.name) ++c;
    if (c == config.signature_size()) {
      unknown.push_back(absl::StrCat("'", column.name, "'"));
    } else if (++seen[c] == 2) {
      twice.push_back(absl::StrCat("'", column.name, "'"));
    }
  }
  std::vector<std::string> all;
  for (int c = 0; c < config.signature_size(); ++c) {
    all.push_back(absl::StrCat("'", config.signature(c).name(), "'"));
    if (seen[c] == 0) missing.push_back(all.back());
  }
  if (missing.empty() && unknown.empty() && twice.empty()) return absl::OkStatus();
  std::vector<std::string> problems;
  if (!missing.empty()) problems.push_back(absl::StrCat("missing ", absl::StrJoin(missing, ", ")));
  if (!unknown.empty()) {
    problems.push_back(absl::StrCat("not columns of the table: ", absl::StrJoin(unknown, ", ")));
  }
  if (!twice.empty()) problems.push_back(absl::StrCat("given twice: ", absl::StrJoin(twice, ", ")));
  return QuotedFieldError("columns",
                          absl::StrCat(absl::StrJoin(problems, "; "), " (table '", config.name(),
                                       "' has columns ", absl::StrJoin(all, ", "), ")"));
}

absl::Status ParseInsertRequest(const ScatteredBytes& message, InsertBatch* batch) {
  *batch = InsertBatch();
  return InsertRequestParser(message).Parse(batch);
}

int64_t EncodedInsertRequestSize(const InsertBatch& batch, int64_t min_gap_bytes) {
  int64_t size = 0;
  if (!batch.table.empty()) size += DelimitedSize(static_cast<int64_t>(batch.table.size()));
  for (const InsertColumn& column : batch.columns) {
    size += DelimitedSize(NamedTensorSize(column));
    if (column.data.size() >= min_gap_bytes) size -= column.data.size();
  }
  if (!batch.priorities.empty()) {
    size += DelimitedSize(static_cast<int64_t>(8 * batch.priorities.size()));
  }
  if (batch.return_keys) size += 2;
  if (batch.max_wait_ms != 0) size += 1 + VarintSize(static_cast<uint64_t>(batch.max_wait_ms));
  return size;
}

void EncodeInsertRequest(const InsertBatch& batch, char* out) {
  EncodeInsertRequestAround(batch, std::numeric_limits<int64_t>::max(), out, nullptr);
}

int64_t EncodeInsertRequestAround(const InsertBatch& batch, int64_t min_gap_bytes, char* out,
                                  std::vector<DataGap>* gaps) {
  Encoder encoder{out, out, min_gap_bytes, gaps};
  if (!batch.table.empty()) encoder.out = WriteBytes(kRequestTable, batch.table, encoder.out);
  for (const InsertColumn& column : batch.columns) encoder.Column(column);
  if (!batch.priorities.empty()) {
    encoder.out = WriteTag(kRequestPriorities, kLengthDelimited, encoder.out);
    encoder.out = WriteVarint(8 * batch.priorities.size(), encoder.out);
    // doubles travel as little-endian fixed64, as they lie in memory.
    std::memcpy(encoder.out, batch.priorities.data(), 8 * batch.priorities.size());
    encoder.out += 8 * batch.priorities.size();
  }
  if (batch.return_keys) {
    encoder.out = WriteTag(kRequestReturnKeys, kVarint, encoder.out);
    *encoder.out++ = 1;
  }
  if (batch.max_wait_ms != 0) {
    encoder.out = WriteTag(kRequestMaxWaitMs, kVarint, encoder.out);
    encoder.out = WriteVarint(static_cast<uint64_t>(batch.max_wait_ms), encoder.out);
  }
  return encoder.out - out;
}

absl::StatusOr<DType> CheckInsertColumn(const InsertColumn& column, const TensorSpec& spec) {
  PRL_ASSIGN_OR_RETURN(const DType dtype,
                       DTypeFromProto(column.dtype, absl::StrCat(spec.name, ".dtype")));
  // the shape against the byte length, in ViewTensorProto's words.
  uint64_t elements = 1;
  for (size_t i = 0; i < column.shape.size(); ++i) {
    if (column.shape[i] < 0) {
      return QuotedFieldError(
          spec.name, absl::StrCat("shape ", ShapeString(column.shape), " has negative dimension ",
                                  i, "; dimensions must be >= 0"));
    }
    const uint64_t d = static_cast<uint64_t>(column.shape[i]);
    if (d != 0 && elements > std::numeric_limits<uint64_t>::max() / 16 / d) {
      return QuotedFieldError(spec.name,
                              absl::StrCat("shape ", ShapeString(column.shape), " is too large"));
    }
    elements *= d;
  }
  const uint64_t want_bytes = elements * DTypeSize(dtype);
  if (want_bytes != static_cast<uint64_t>(column.data.size())) {
    return QuotedFieldError(
        spec.name, absl::StrCat("shape ", ShapeString(column.shape), " of ", DTypeName(dtype),
                                " needs ", want_bytes, " bytes of data, got ", column.data.size()));
  }
  TensorSpec layout = spec;
  layout.require_finite = false;
  PRL_RETURN_IF_ERROR(CheckTensor(TensorView{dtype, column.shape, {}}, layout));
  if (spec.require_finite && dtype == DType::kFloat32) {
    PRL_RETURN_IF_ERROR(CheckFinite(column.data, spec.name));
  }
  return dtype;
}

}  // namespace prl::replay
