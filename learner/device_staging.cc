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

  std::vector<at::Tensor> StageAll(absl::Span<const TensorView> views) override {
    const c10::cuda::CUDAGuard device_guard(device_);
    // both allocations with the copy stream current: the allocators look at the current
    // stream's capture status, and this one is never captured
    const c10::cuda::CUDAStreamGuard stream_guard(stream_);
    constexpr int64_t kAlign = 256;
    std::vector<int64_t> offsets;
    int64_t end = 0;
    for (const TensorView& v : views) {
      offsets.push_back(end);
      end += (static_cast<int64_t>(v.bytes.size()) + kAlign - 1) / kAlign * kAlign;
    }
    const at::TensorOptions bytes = at::TensorOptions().dtype(at::kByte);
    // LibTorch's caching host allocator: a block is reused only once the copies that read it
    // (recorded by the non-blocking copy below) have run, so `host` may go at once
    at::Tensor host = at::empty({end}, bytes.pinned_memory(true));
    char* h = static_cast<char*>(host.data_ptr());
    for (size_t i = 0; i < views.size(); ++i) {
      if (!views[i].bytes.empty()) {
        std::memcpy(h + offsets[i], views[i].bytes.data(), views[i].bytes.size());
      }
    }
    at::Tensor device = at::empty({end}, bytes.device(at::kCUDA, device_));
    device.copy_(host, /*non_blocking=*/true);
    std::vector<at::Tensor> out;
    out.reserve(views.size());
    for (size_t i = 0; i < views.size(); ++i) {
      const std::vector<int64_t> shape(views[i].shape.begin(), views[i].shape.end());
      out.push_back(device.narrow(0, offsets[i], static_cast<int64_t>(views[i].bytes.size()))
                        .view(ToTorchDType(views[i].dtype))
                        .view(shape));
    }
    return out;
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
