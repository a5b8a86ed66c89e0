// CUDA graphs for the learner's updates, behind an interface free of CUDA headers: a side
// stream on which an agent's updates run, and whole updates captured on it as CUDA graphs
// (at::cuda::CUDAGraph, each with its own memory pool) and replayed. Capturing turns the
// hundreds of small kernels of one SAC update at batch 256, each launched by the CPU, into one
// launch: the GPU update stops being bound by launch latency. Built with a CUDA LibTorch only
// (PRL_WITH_CUDA); elsewhere GraphStream::Create returns nullptr and callers keep their eager
// path.
//
// Thread-compatible: one thread drives a GraphStream and its graphs. Captures run in thread-local
// mode on the GraphStream's own stream, never on one of LibTorch's pool: the replay feed's thread
// stages batches on a pool stream meanwhile (learner/device_staging.h).
#ifndef PRL_LEARNER_CUDA_GRAPH_H_
#define PRL_LEARNER_CUDA_GRAPH_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "c10/core/Device.h"

namespace prl::learner {

class CapturedGraph {
 public:
  virtual ~CapturedGraph() = default;
  // Launches the captured work on the current stream (call it inside GraphStream::Run).
  virtual void Replay() = 0;
};

class GraphStream {
 public:
  // A stream of LibTorch's pool on `device`; nullptr unless this build has CUDA and `device` is
  // a CUDA device.
  static std::unique_ptr<GraphStream> Create(const c10::Device& device);
  virtual ~GraphStream() = default;

  // Runs `fn` with the side stream current. What `fn` queues runs after everything already
  // queued on the caller's current stream, and the caller's stream then waits for it, so the
  // caller sees the side stream's work as its own.
  virtual void Run(const std::function<void()>& fn) = 0;

  // Waits until everything queued on the side stream has run.
  virtual void Synchronize() = 0;

  // Captures what `fn` queues (on the side stream; call it inside Run) into a graph without
  // running it. Tensors `fn` allocates live in the graph's private pool and keep their
  // addresses across replays. Errors: INTERNAL with CUDA's or LibTorch's message (an operation
  // that cannot be captured, such as a copy to the host); the capture is then abandoned and
  // nothing was run.
  virtual absl::StatusOr<std::unique_ptr<CapturedGraph>> Capture(
      const std::function<void()>& fn) = 0;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_CUDA_GRAPH_H_
