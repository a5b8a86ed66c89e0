// Test helper: fetches an experiment's newest policy from the learner (ActorService.GetPolicy)
// and prints its architecture, its weight names and shapes, and its transfer plan's size, for
// end-to-end scripts to check.
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/client.h"
#include "grpcpp/grpcpp.h"
#include "proto/actor.grpc.pb.h"

ABSL_FLAG(std::string, learner, "", "learner address (host:port)");
ABSL_FLAG(std::string, experiment, "", "experiment id");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      prl::CreateChannel({absl::GetFlag(FLAGS_learner)});
  if (!channel.ok()) {
    std::cerr << channel.status() << "\n";
    return 1;
  }
  auto stub = prl::v1::ActorService::NewStub(*channel);
  prl::v1::GetPolicyRequest request;
  request.set_experiment_id(absl::GetFlag(FLAGS_experiment));
  prl::v1::GetPolicyResponse response;
  grpc::ClientContext context;
  prl::PrepareContext({absl::Seconds(10)}, &context);
  const grpc::Status s = stub->GetPolicy(&context, request, &response);
  if (!s.ok()) {
    std::cerr << "GetPolicy: " << s.error_message() << "\n";
    return 1;
  }
  const prl::v1::Policy& policy = response.policy();
  std::cout << "version: " << policy.version() << "\n" << policy.architecture().DebugString();
  for (const prl::v1::NamedTensor& w : policy.weights()) {
    std::cout << "weight " << w.name() << " [" << absl::StrJoin(w.tensor().shape(), ", ") << "]\n";
  }
  std::cout << "source_tasks: " << policy.transfer().source_task_size() << "\n";
  std::cout << "plan: [" << absl::StrJoin(policy.transfer().source_task(), ", ") << "]\n";
  return 0;
}
