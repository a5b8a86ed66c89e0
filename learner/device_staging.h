// Host-to-device staging of the replay feed's batches on a CUDA device. Each column is copied
// once, from the sample response into pinned host memory (LibTorch's caching host allocator),
// and from there to the device asynchronously on a copy stream of the stager's own: the feed's
// thread never waits for a transfer, the copies overlap the learner's updates, and the learner's
// stream waits only for the copies of the batch it is about to use (a fence the consumer adopts).
// Behind an interface free of CUDA headers, as learner/cuda_graph.h; built with a CUDA LibTorch
// only (PRL_WITH_CUDA). Elsewhere Create returns nullptr and the feed converts batches with
// plain copies.
//
// Thread-compatible: one thread (the feed's) stages and takes fences; a fence is adopted once,
// on the thread that uses the batch.
//
// Two rules for the rest of the process, which the copy stream relies on: nothing captures a
// CUDA graph on a stream of LibTorch's pool (the copies would land in the capture; GraphStream
// captures on a stream of its own), and every capture runs in thread-local or relaxed mode (in
// global mode the copy thread's pinned allocations and event queries would break it).
#ifndef PRL_LEARNER_DEVICE_STAGING_H_
#define PRL_LEARNER_DEVICE_STAGING_H_

#include <memory>
#include <vector>

#include "ATen/core/Tensor.h"
#include "absl/types/span.h"
#include "c10/core/Device.h"
#include "common/tensor.h"

namespace prl::learner {

// The point after some staged copies, for the thread that uses their tensors.
class StagingFence {
 public:
  virtual ~StagingFence() = default;
  // On the consumer's thread: its current stream waits for every copy queued before the fence,
  // and `tensors` (staged before it) are marked as used by that stream, so that the device
  // allocator does not hand their memory to a later copy before that stream is done with them.
  // The tensors may then be read on that stream, or on streams that join it before the tensors
  // are freed. Throws c10::Error for a CUDA failure.
  virtual void Adopt(absl::Span<const at::Tensor> tensors) = 0;
};

class DeviceStager {
 public:
  // A stager for `device` with a copy stream of its own; nullptr unless this build has CUDA and
  // `device` is a CUDA device.
  static std::unique_ptr<DeviceStager> Create(const c10::Device& device);
  virtual ~DeviceStager() = default;

  // Copies `views` (a batch's columns) into one block of pinned host memory and queues one copy
  // of it to the device; returns the device tensors, views of one device block, each at a
  // 256-byte boundary in the order given (the layout learner/input_block.h copies in one
  // transfer), which a consumer may use once it has adopted a fence taken after this call. The
  // views' bytes may be freed on return. Throws c10::Error for a CUDA failure.
  virtual std::vector<at::Tensor> StageAll(absl::Span<const TensorView> views) = 0;
  // StageAll for one tensor.
  at::Tensor Stage(const TensorView& view) { return StageAll(absl::MakeConstSpan(&view, 1))[0]; }

  // A fence after every copy queued so far. Throws c10::Error for a CUDA failure.
  virtual std::unique_ptr<StagingFence> Fence() = 0;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_DEVICE_STAGING_H_
