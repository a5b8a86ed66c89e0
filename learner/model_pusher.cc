#include "learner/model_pusher.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "common/logging.h"

namespace prl::learner {

ModelPusher::ModelPusher(std::shared_ptr<grpc::Channel> channel, std::string address,
                         const prior_server::RemotePriorOptions& options)
    : channel_(std::move(channel)), address_(std::move(address)), options_(options) {
  thread_ = std::thread([this] { Loop(); });
}

ModelPusher::~ModelPusher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    for (const Item& item : queue_) {
      PRL_LOG(WARNING) << "model '" << item.name << "' v" << item.version
                       << " was not pushed to the prior server at " << address_
                       << " (shutting down)";
    }
    queue_.clear();
  }
  thread_.join();
}

void ModelPusher::Push(const std::string& name, int64_t version, const std::string& path) {
  absl::MutexLock lock(&mu_);
  queue_.push_back({name, version, path});
}

int64_t ModelPusher::finished() const {
  absl::MutexLock lock(&mu_);
  return finished_;
}

int64_t ModelPusher::succeeded() const {
  absl::MutexLock lock(&mu_);
  return succeeded_;
}

bool ModelPusher::AwaitFinished(int64_t n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  struct Args {
    const ModelPusher* pusher;
    int64_t n;
  } args{this, n};
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->pusher->finished_ >= a->n; },
          &args),
      timeout);
}

void ModelPusher::Loop() {
  for (;;) {
    Item item;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ModelPusher* p)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return p->stop_ || !p->queue_.empty(); },
          this));
      if (stop_) return;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    std::ifstream in(item.path, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    absl::StatusOr<v1::ModelInfo> pushed =
        in ? prior_server::PushModel(channel_, item.name, item.version, bytes.str(), options_)
           : absl::StatusOr<v1::ModelInfo>(absl::NotFoundError("cannot read " + item.path));
    if (pushed.ok()) {
      PRL_LOG(INFO) << "pushed model '" << item.name << "' v" << item.version
                    << " to the prior server at " << address_;
    } else {
      PRL_LOG(WARNING) << "could not push model '" << item.name << "' v" << item.version
                       << " to the prior server at " << address_ << ": " << pushed.status();
    }
    absl::MutexLock lock(&mu_);
    ++finished_;
    if (pushed.ok()) ++succeeded_;
  }
}

}  // namespace prl::learner
