#include "common/metrics.h"

#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/version.h"
#include "prometheus/gauge.h"

namespace prl {
namespace {

constexpr const char* kCodeNames[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

// Records one RPC: started when the call arrives, observed when its status is sent.
class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(std::string method, prometheus::Family<prometheus::Counter>& handled,
                        prometheus::Family<prometheus::Histogram>& latency)
      : method_(std::move(method)), handled_(handled), latency_(latency), start_(absl::Now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const int code = static_cast<int>(methods->GetSendStatus().error_code());
      const char* name = code >= 0 && code <= 16 ? kCodeNames[code] : "UNKNOWN";
      handled_.Add({{"method", method_}, {"code", name}}).Increment();
      latency_.Add({{"method", method_}}, LatencyBuckets())
          .Observe(absl::ToDoubleSeconds(absl::Now() - start_));
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& latency_;
  const absl::Time start_;
};

}  // namespace

void RegisterBuildInfo(prometheus::Registry& registry, absl::string_view service) {
  prometheus::BuildGauge()
      .Name("prl_build_info")
      .Help("PRL build information; the value is always 1.")
      .Register(registry)
      .Add({{"service", std::string(service)}, {"version", kVersion}})
      .Set(1);
}

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  prometheus::Histogram::BucketBoundaries buckets;
  for (double b = 50e-6; b < 10.0; b *= 2) buckets.push_back(b);
  return buckets;
}

RpcMetricsInterceptorFactory::RpcMetricsInterceptorFactory(prometheus::Registry& registry)
    : handled_(prometheus::BuildCounter()
                   .Name("prl_grpc_server_handled_total")
                   .Help("RPCs completed by the server, by method and status code.")
                   .Register(registry)),
      latency_(prometheus::BuildHistogram()
                   .Name("prl_grpc_server_handling_seconds")
                   .Help("Time from receiving an RPC to sending its status.")
                   .Register(registry)) {}

grpc::experimental::Interceptor* RpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new RpcMetricsInterceptor(info->method(), handled_, latency_);
}

}  // namespace prl
