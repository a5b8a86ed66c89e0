// Which Algorithm a TRAIN experiment runs: a map from the spec's algorithm (the oneof case of
// prl.v1.AlgorithmSpec) to a factory. The learner builds one registry at start
// (DefaultAlgorithmRegistry) and the training run asks it for the spec's algorithm; a new
// method is one Register call, not a change to the loop or to learner_main.
//
// Thread-safe once built: Create may run concurrently; Register is for setup, before sharing.
#ifndef PRL_LEARNER_ALGORITHM_REGISTRY_H_
#define PRL_LEARNER_ALGORITHM_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "learner/algorithm.h"
#include "proto/experiment.pb.h"

namespace prl::learner {

using AlgorithmFactory =
    std::function<absl::StatusOr<std::unique_ptr<Algorithm>>(const AlgorithmOptions& options)>;

class AlgorithmRegistry {
 public:
  // Registers `factory` for specs whose algorithm oneof is `which`, under the name specs use
  // ("sac"). A second registration of the same case replaces the first.
  void Register(v1::AlgorithmSpec::AlgorithmCase which, std::string name, AlgorithmFactory factory);

  // Builds the algorithm options.spec names. Errors: INVALID_ARGUMENT when the spec names no
  // algorithm; UNIMPLEMENTED naming the method and the ones this learner runs; the factory's.
  absl::StatusOr<std::unique_ptr<Algorithm>> Create(const AlgorithmOptions& options) const;

  // Whether `which` has a factory.
  bool Has(v1::AlgorithmSpec::AlgorithmCase which) const;
  // Names of the registered methods, sorted.
  std::vector<std::string> names() const;

 private:
  struct Entry {
    std::string name;
    AlgorithmFactory factory;
  };
  std::map<int, Entry> entries_;
};

// The registry of this learner's methods: sac and td3 (flat_algorithm.h). The prior-guided
// methods register here as they are built.
AlgorithmRegistry DefaultAlgorithmRegistry();

}  // namespace prl::learner

#endif  // PRL_LEARNER_ALGORITHM_REGISTRY_H_
