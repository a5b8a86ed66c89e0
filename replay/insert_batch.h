// Insert batches as a table reads them: the fields of a prl.v1.InsertRequest, with each column's
// bytes allowed to lie in several pieces, plus the InsertRequest wire format read from and
// written to such pieces. This is what keeps copies off the gRPC insert path: the service parses
// a request straight from the slices gRPC received it in (ParseInsertRequest), the table copies
// each payload once, into its storage, and clients encode a request from their own buffers into
// one send buffer (EncodeInsertRequest), or around its large payloads so that those are sent
// from where they lie (EncodeInsertRequestAround). No gRPC here.
//
// ScatteredBytes and the column data of an InsertBatch are views: the caller keeps the viewed
// buffers alive while they are used. Thread-compatible.
#ifndef PRL_REPLAY_INSERT_BATCH_H_
#define PRL_REPLAY_INSERT_BATCH_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/tensor.h"
#include "proto/replay.pb.h"

namespace prl::replay {

// Trailing metadata of a failed Insert stream: the rows it stored before failing (decimal).
inline constexpr char kRowsInsertedMetadata[] = "prl-rows-inserted";

// A byte string held in several pieces, in order (e.g. the slices of a received message).
// Does not own the pieces.
class ScatteredBytes {
 public:
  ScatteredBytes() = default;
  explicit ScatteredBytes(absl::string_view contiguous) { Append(contiguous); }

  // Adds `piece` at the end (empty pieces are dropped).
  void Append(absl::string_view piece);
  void Clear();

  int64_t size() const { return size_; }
  const std::vector<absl::string_view>& pieces() const { return pieces_; }
  // The bytes as one string (a copy; for tests and small fields).
  std::string ToString() const;
  // The bytes from `offset` on (0 <= offset <= size()), viewing the same pieces.
  ScatteredBytes Suffix(int64_t offset) const;

 private:
  std::vector<absl::string_view> pieces_;
  int64_t size_ = 0;
};

// Reads a ScatteredBytes front to back. Not thread-safe; the bytes must outlive the reader.
class ScatteredReader {
 public:
  explicit ScatteredReader(const ScatteredBytes& bytes) : pieces_(&bytes.pieces()) {}
  // Copies the next `n` bytes to `out`; CHECK-fails when fewer are left.
  void Read(int64_t n, char* out);

 private:
  const std::vector<absl::string_view>* pieces_;
  size_t piece_ = 0;
  size_t offset_ = 0;  // into (*pieces_)[piece_]
};

// One column of an InsertRequest (a NamedTensor), its data possibly in pieces.
struct InsertColumn {
  std::string name;
  // A prl.v1.Tensor.DType value as received, not yet checked.
  int dtype = 0;
  std::vector<int64_t> shape;
  ScatteredBytes data;
};

// The content of one InsertRequest (see proto/replay.proto for what each field means).
struct InsertBatch {
  std::string table;
  std::vector<InsertColumn> columns;
  std::vector<double> priorities;
  bool return_keys = false;
  int64_t max_wait_ms = 0;

  // Views `request`'s tensors (each in one piece) without copying them; `request` must outlive
  // the batch.
  static InsertBatch FromProto(const v1::InsertRequest& request);

  // Rows in the batch: the leading dimension of its first column (0 without columns).
  int64_t rows() const;
  // The batch without its first `rows` rows (0 <= rows <= this->rows()), viewing the same
  // buffers: each column's data from row `rows` on, and the priorities past them. The batch
  // must be consistent (every column with this->rows() rows of equal size, as a shard that
  // stored some of its rows checked).
  InsertBatch DropFront(int64_t rows) const;
};

// Checks that `batch` has exactly the columns of `config`'s signature, each once. Errors:
// INVALID_ARGUMENT "field 'columns': ..." naming the missing columns, the columns the table
// does not have and the columns given twice, and the table's columns.
absl::Status CheckInsertColumnNames(const InsertBatch& batch, const v1::TableConfig& config);

// Parses the wire form of a prl.v1.InsertRequest from `message` into `batch`, viewing (not
// copying) the tensor payloads, with the protobuf parser's semantics: fields in any order,
// unknown fields and fields of an unexpected wire type skipped, packed and unpacked repeated
// scalars both accepted, the last value of a singular field kept, a repeated submessage field
// merged. Errors: INVALID_ARGUMENT "malformed InsertRequest: ..." for data that is not a valid
// message (truncated, bad varint, bad tag or wire type, a length past the end).
absl::Status ParseInsertRequest(const ScatteredBytes& message, InsertBatch* batch);

// Size of `batch`'s wire form, not counting the data of columns holding at least
// `min_gap_bytes` (what EncodeInsertRequestAround writes).
int64_t EncodedInsertRequestSize(const InsertBatch& batch,
                                 int64_t min_gap_bytes = std::numeric_limits<int64_t>::max());

// Writes the wire form of `batch` to `out`, which must have room for
// EncodedInsertRequestSize(batch) bytes: the bytes protobuf would serialize for the same
// InsertRequest, each column's data copied once, straight from its pieces.
void EncodeInsertRequest(const InsertBatch& batch, char* out);

// A column's data that EncodeInsertRequestAround left out, and where it belongs among the bytes
// it wrote.
struct DataGap {
  int64_t offset;
  const ScatteredBytes* data;  // a column of the encoded batch
};

// The wire form of `batch` for a scatter-gather send, with the data of each column holding at
// least `min_gap_bytes` left where it is: writes every other byte to `out` (room for
// EncodedInsertRequestSize(batch, min_gap_bytes) bytes), appends to `gaps` where each left-out
// column's data belongs, in order, and returns the bytes written. out[0, gaps[0].offset), then
// *gaps[0].data, then out[gaps[0].offset, gaps[1].offset), ..., then
// out[gaps.back().offset, end) are exactly the bytes EncodeInsertRequest writes.
int64_t EncodeInsertRequestAround(const InsertBatch& batch, int64_t min_gap_bytes, char* out,
                                  std::vector<DataGap>* gaps);

// Checks `column` the way common/tensor.h's ViewAndCheckTensorProto checks a v1::Tensor, with the
// same errors naming spec.name: a known dtype, a shape that matches the byte length, then
// spec's dtype, shape and finite values. Returns the dtype.
absl::StatusOr<DType> CheckInsertColumn(const InsertColumn& column, const TensorSpec& spec);

}  // namespace prl::replay

#endif  // PRL_REPLAY_INSERT_BATCH_H_
