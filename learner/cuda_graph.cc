#include "learner/cuda_graph.h"

#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#ifdef PRL_WITH_CUDA
#include "ATen/cuda/CUDAEvent.h"
#include "ATen/cuda/CUDAGraph.h"
#include "c10/cuda/CUDAException.h"
#include "c10/cuda/CUDAGuard.h"
#include "c10/cuda/CUDAStream.h"
#include "c10/util/Exception.h"
#include "cuda_runtime_api.h"
#endif

namespace prl::learner {

#ifdef PRL_WITH_CUDA
namespace {

std::string Message(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

class TorchGraph final : public CapturedGraph {
 public:
  TorchGraph() = default;
  void Replay() override { graph_.replay(); }
  at::cuda::CUDAGraph& graph() { return graph_; }

 private:
  at::cuda::CUDAGraph graph_;
};

// A stream of its own, not one of LibTorch's pool (which hands the same 32 streams to every
// caller in turn): work another thread queued on a shared stream would land in a capture.
cudaStream_t NewStream(c10::DeviceIndex device) {
  c10::cuda::CUDAGuard device_guard(device);
  cudaStream_t stream = nullptr;
  C10_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return stream;
}

class CudaGraphStream final : public GraphStream {
 public:
  explicit CudaGraphStream(c10::DeviceIndex device)
      : raw_(NewStream(device)), stream_(c10::cuda::getStreamFromExternal(raw_, device)) {}

  ~CudaGraphStream() override {
    // graphs and tensors of this stream's work are gone or synchronised by now
    (void)cudaStreamSynchronize(raw_);
    (void)cudaStreamDestroy(raw_);
  }

  void Run(const std::function<void()>& fn) override {
    const c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(stream_.device_index());
    at::cuda::CUDAEvent queued;
    queued.record(caller);
    queued.block(stream_);
    // the caller's stream waits for whatever fn queued, also when fn throws halfway: the caller
    // may free (and its stream reuse) tensors the queued work still reads
    struct Join {
      const c10::cuda::CUDAStream& side;
      const c10::cuda::CUDAStream& caller;
      ~Join() {
        at::cuda::CUDAEvent done;
        done.record(side);
        done.block(caller);
      }
    } join{stream_, caller};
    c10::cuda::CUDAStreamGuard guard(stream_);
    fn();
  }

  void Synchronize() override { stream_.synchronize(); }

  absl::StatusOr<std::unique_ptr<CapturedGraph>> Capture(const std::function<void()>& fn) override {
    auto graph = std::make_unique<TorchGraph>();
    bool begun = false;
    try {
      // Thread-local mode: other threads of the process (a replay feed staging batches) may go
      // on allocating and copying while this one captures.
      graph->graph().capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
      begun = true;
      fn();
      begun = false;
      graph->graph().capture_end();
    } catch (const std::exception& e) {
      const std::string message = Message(e);
      if (begun) {
        try {
          graph->graph().capture_end();  // ends the capture and the pool's use; may throw
        } catch (const std::exception&) {
        }
      }
      (void)cudaGetLastError();  // a failed capture leaves a (non-sticky) error behind
      return absl::InternalError(absl::StrCat("CUDA graph capture failed: ", message));
    }
    return std::unique_ptr<CapturedGraph>(std::move(graph));
  }

 private:
  cudaStream_t raw_;
  c10::cuda::CUDAStream stream_;
};

}  // namespace

std::unique_ptr<GraphStream> GraphStream::Create(const c10::Device& device) {
  if (!device.is_cuda()) return nullptr;
  return std::make_unique<CudaGraphStream>(device.has_index() ? device.index() : 0);
}

#else

std::unique_ptr<GraphStream> GraphStream::Create(const c10::Device& /*device*/) { return nullptr; }

#endif  // PRL_WITH_CUDA

}  // namespace prl::learner
