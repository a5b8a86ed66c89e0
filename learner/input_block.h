// A captured graph's static inputs, refilled before each replay in as few copies as the source
// allows. On a GPU the replay feed stages each batch's columns in one block of device memory
// (learner/device_staging.h, DeviceStager::StageAll); a graph's inputs made from such a batch lie
// in one block too, at the same offsets, and a later batch laid out the same way is copied in
// with one transfer instead of one per column (each a copy_ through LibTorch's dispatcher on the
// host and a copy on the device, between the graph's replays).
//
// Thread-compatible.
#ifndef PRL_LEARNER_INPUT_BLOCK_H_
#define PRL_LEARNER_INPUT_BLOCK_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "ATen/core/Tensor.h"
#include "absl/types/span.h"

namespace prl::learner {

// Where a set of tensors lies in one allocation: each one's byte offset from the lowest start
// (-1 for an undefined tensor) and the bytes from that start to the highest end.
struct BlockLayout {
  int64_t span_bytes = 0;
  std::vector<int64_t> offsets;

  bool operator==(const BlockLayout& o) const {
    return span_bytes == o.span_bytes && offsets == o.offsets;
  }
};

// The layout of `tensors` (undefined ones skipped), or nullopt where they are not in one block:
// none defined, one not contiguous, on another device or in another storage than the first, two
// overlapping, or a span over twice their bytes plus 4 KiB (a copy of the span would move mostly
// memory that is not theirs).
std::optional<BlockLayout> LayoutInOneBlock(absl::Span<const at::Tensor* const> tensors);

class InputBlock {
 public:
  // Empty tensors shaped as `like`'s into `out` (one per entry; undefined where like's is), on
  // like's device: views of one block laid out as `like` is, where like lies in one block; one
  // allocation each otherwise. The allocations are made on the current stream.
  InputBlock(absl::Span<const at::Tensor* const> like, absl::Span<at::Tensor* const> out);

  // Copies `from` into `into` (the tensors the constructor made; `from` shaped and typed as
  // they are), non-blocking on the current stream: one copy of the block when `from` lies in
  // one block laid out as the constructor's `like` did, else one per defined tensor. Returns
  // the number of copies queued. Throws c10::Error where a copy fails.
  int Fill(absl::Span<const at::Tensor* const> from, absl::Span<at::Tensor* const> into) const;

  bool packed() const { return layout_.has_value(); }

 private:
  std::optional<BlockLayout> layout_;
  at::Tensor block_;  // uint8 [span_bytes] where packed
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_INPUT_BLOCK_H_
