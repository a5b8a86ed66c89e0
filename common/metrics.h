// Metrics shared by every PRL process: prl_build_info and per-RPC counters and latencies.
// Everything is registered on a prometheus::Registry passed in, never on a global, so tests
// read metrics from a fresh registry.
#ifndef PRL_COMMON_METRICS_H_
#define PRL_COMMON_METRICS_H_

#include <memory>

#include "absl/strings/string_view.h"
#include "grpcpp/support/server_interceptor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace prl {

// Registers prl_build_info{service, version} = 1.
void RegisterBuildInfo(prometheus::Registry& registry, absl::string_view service);

// Exponential latency buckets from 50 us to ~6.5 s, for `_seconds` histograms.
prometheus::Histogram::BucketBoundaries LatencyBuckets();

// A gRPC server interceptor factory that counts every handled RPC by method and status code
// (prl_grpc_server_handled_total) and observes its handling time
// (prl_grpc_server_handling_seconds). Thread-safe; must outlive the server.
class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(prometheus::Registry& registry);

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& latency_;
};

}  // namespace prl

#endif  // PRL_COMMON_METRICS_H_
