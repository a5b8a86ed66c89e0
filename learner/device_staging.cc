#include "learner/device_staging.h"

#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#ifdef PRL_WITH_CUDA
#include "ATen/ATen.h"
#include "ATen/cuda/CUDAEvent.h"
#include "c10/cuda/CUDAGuard.h"
#include "c10/cuda/CUDAStream.h"
#include "common/torch_tensor.h"
#endif

namespace prl::learner {

#ifdef PRL_WITH_CUDA
namespace {

class CudaFence final : public StagingFence {
 public:
  CudaFence(c10::DeviceIndex device, at::cuda::CUDAEvent event)
      : device_(device), event_(std::move(event)) {}

  void Adopt(absl::Span<const at::Tensor> tensors) override {
    const c10::cuda::CUDAStream consumer = c10::cuda::getCurrentCUDAStream(device_);
    event_.block(consumer);
    for (const at::Tensor& t : tensors) {
      if (t.defined() && t.is_cuda()) t.record_stream(consumer);
    }
  }

 private:
  const c10::DeviceIndex device_;
  at::cuda::CUDAEvent event_;
};

class CudaStager final : public DeviceStager {
 public:
  // A stream of LibTorch's pool: no capture runs on those (GraphStream captures on a stream of
  // its own), and pool streams outlive the tensors allocated on them, which a destroyed stream
  // of the stager's own would not.
  explicit CudaStager(c10::DeviceIndex device)
      : device_(device), stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device)) {}

  at::Tensor Stage(const TensorView& view) override {
    const c10::cuda::CUDAGuard device_guard(device_);
    // both allocations with the copy stream current: the allocators look at the current
    // stream's capture status, and this one is never captured
    const c10::cuda::CUDAStreamGuard stream_guard(stream_);
    const std::vector<int64_t> shape(view.shape.begin(), view.shape.end());
    const at::TensorOptions options = at::TensorOptions().dtype(ToTorchDType(view.dtype));
    // LibTorch's caching host allocator: a block is reused only once the copies that read it
    // (recorded by the non-blocking copy below) have run, so `host` may go at once
    at::Tensor host = at::empty(shape, options.pinned_memory(true));
    if (!view.bytes.empty()) std::memcpy(host.data_ptr(), view.bytes.data(), view.bytes.size());
    at::Tensor device = at::empty(shape, options.device(at::kCUDA, device_));
    device.copy_(host, /*non_blocking=*/true);
    return device;
  }

  std::unique_ptr<StagingFence> Fence() override {
    at::cuda::CUDAEvent event;
    event.record(stream_);
    return std::make_unique<CudaFence>(device_, std::move(event));
  }

 private:
  const c10::DeviceIndex device_;
  const c10::cuda::CUDAStream stream_;
};

}  // namespace

std::unique_ptr<DeviceStager> DeviceStager::Create(const c10::Device& device) {
  if (!device.is_cuda()) return nullptr;
  return std::make_unique<CudaStager>(device.has_index() ? device.index() : 0);
}

#else

std::unique_ptr<DeviceStager> DeviceStager::Create(const c10::Device& /*device*/) {
  return nullptr;
}

#endif  // PRL_WITH_CUDA

}  // namespace prl::learner
