#include "learner/model_pusher.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "common/client.h"
#include "common/logging.h"
#include "proto/prior.grpc.pb.h"

namespace prl::learner {

ModelPusher::ModelPusher(std::shared_ptr<grpc::Channel> channel, std::string address,
                         const prior_server::RemotePriorOptions& options)
    : channel_(std::move(channel)), address_(std::move(address)), options_(options) {
  options_.retry.canceller = &canceller_;
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
  canceller_.Cancel();
  thread_.join();
}

void ModelPusher::Push(const std::string& name, int64_t version, const std::string& path) {
  absl::MutexLock lock(&mu_);
  queue_.push_back({name, version, path, {}, nullptr});
}

void ModelPusher::CatchUp(std::vector<v1::ModelInfo> stored,
                          std::function<std::string(const std::string&, int64_t)> path_of) {
  absl::MutexLock lock(&mu_);
  queue_.push_back({"", 0, "", std::move(stored), std::move(path_of)});
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

bool ModelPusher::PushOne(const Item& item) {
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
  return pushed.ok();
}

void ModelPusher::RunCatchUp(const Item& item) {
  auto stub = v1::PriorService::NewStub(channel_);
  v1::ListModelsRequest request;
  request.set_include_unloaded(true);
  v1::ListModelsResponse response;
  const absl::Status listed =
      CallWithRetry(options_.call, options_.retry, [&](grpc::ClientContext* context) {
        response.Clear();
        return stub->ListModels(context, request, &response);
      });
  if (!listed.ok()) {
    PRL_LOG(WARNING) << "could not list the models of the prior server at " << address_
                     << " to push what it lacks: " << listed
                     << " (prlctl load-model pushes a model by hand)";
    absl::MutexLock lock(&mu_);
    ++finished_;
    return;
  }
  std::map<std::string, int64_t> served;  // newest version the server has, by name
  for (const v1::ModelInfo& m : response.models()) {
    served[m.name()] = std::max(served[m.name()], m.version());
  }
  std::map<std::string, int64_t> newest;  // newest stored version, by name
  for (const v1::ModelInfo& m : item.stored) {
    newest[m.name()] = std::max(newest[m.name()], m.version());
  }
  std::vector<Item> missing;
  for (const v1::ModelInfo& m : item.stored) {  // sorted by name, then version
    const auto it = served.find(m.name());
    if (it == served.end() ? m.version() == newest[m.name()] : m.version() > it->second) {
      missing.push_back({m.name(), m.version(), item.path_of(m.name(), m.version()), {}, nullptr});
    }
  }
  if (!missing.empty()) {
    PRL_LOG(INFO) << "the prior server at " << address_ << " lacks " << missing.size()
                  << " stored model version(s); pushing them";
  }
  {
    absl::MutexLock lock(&mu_);
    ++finished_;
    ++succeeded_;
  }
  for (const Item& push : missing) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    const bool ok = PushOne(push);
    absl::MutexLock lock(&mu_);
    ++finished_;
    if (ok) ++succeeded_;
  }
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
    if (item.path_of != nullptr) {
      RunCatchUp(item);
      continue;
    }
    const bool ok = PushOne(item);
    absl::MutexLock lock(&mu_);
    ++finished_;
    if (ok) ++succeeded_;
  }
}

}  // namespace prl::learner
