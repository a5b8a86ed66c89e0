// Pushes each model the learner stores to a prior server that shares no file system with it
// (Kubernetes), through PriorService.LoadModel with the artifact's bytes. Pushes run on a
// background thread, in order, each retried on UNAVAILABLE (a server starting or restarting)
// with backoff for up to a few minutes; the server keeps pushed PRL artifacts in its own model
// directory, so a restarted server serves them again. Pushes still queued when the learner is
// killed are lost with it; the learner's start queues a CatchUp, which pushes what the server
// lacks. Failures are logged, never fatal: a model that did not reach the server can still be
// pushed with LoadModel by hand.
//
// Thread-safe. Destruction cancels the push in progress (a learner's shutdown does not wait
// out a retry schedule of minutes while the server is down) and drops the rest, logging them.
#ifndef PRL_LEARNER_MODEL_PUSHER_H_
#define PRL_LEARNER_MODEL_PUSHER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "grpcpp/channel.h"
#include "prior_server/prior_client.h"
#include "proto/prior.pb.h"

namespace prl::learner {

class ModelPusher {
 public:
  ModelPusher(std::shared_ptr<grpc::Channel> channel, std::string address,
              const prior_server::RemotePriorOptions& options);
  ~ModelPusher();
  ModelPusher(const ModelPusher&) = delete;
  ModelPusher& operator=(const ModelPusher&) = delete;

  // Queues the artifact file `path` to be pushed as name/version.
  void Push(const std::string& name, int64_t version, const std::string& path)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Queues a catch-up with the server, for the learner's start: pushes that were queued when
  // the learner was killed are lost with it, so the server may lack the newest models. The
  // pusher's thread lists what the server has (loaded or in its directory, with the push
  // retries) and pushes each stored model's versions newer than the server's newest of that
  // name; of a name the server has no version of, only the newest (the server need not get
  // every old version, and one unloaded there by hand on purpose is not pushed back). `stored`:
  // the store's models (ModelStore::List), `path_of` their files. Counts as one push in
  // finished()/succeeded(), plus one per model it pushes.
  void CatchUp(std::vector<v1::ModelInfo> stored,
               std::function<std::string(const std::string&, int64_t)> path_of)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Pushes finished (successfully or not) so far; tests wait on it.
  int64_t finished() const ABSL_LOCKS_EXCLUDED(mu_);
  // Pushes that succeeded so far.
  int64_t succeeded() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until `n` pushes have finished; false when `timeout` passes first.
  bool AwaitFinished(int64_t n, absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Item {
    std::string name;
    int64_t version;
    std::string path;
    // a CatchUp instead of a push
    std::vector<v1::ModelInfo> stored;
    std::function<std::string(const std::string&, int64_t)> path_of;
  };
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  bool PushOne(const Item& item);
  void RunCatchUp(const Item& item) ABSL_LOCKS_EXCLUDED(mu_);

  const std::shared_ptr<grpc::Channel> channel_;
  const std::string address_;
  CallCanceller canceller_;  // the destructor ends a push in progress with it
  prior_server::RemotePriorOptions options_;
  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t finished_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t succeeded_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace prl::learner

#endif  // PRL_LEARNER_MODEL_PUSHER_H_
