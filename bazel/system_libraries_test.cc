// Proves each Debian system library target compiles and links: calls one function of each.
#include "H5Cpp.h"
#include "benchmark/benchmark.h"
#include "gtest/gtest.h"
#include "mujoco/mujoco.h"
#include "prometheus/registry.h"

namespace {

TEST(SystemLibrariesTest, MujocoIs222) { EXPECT_EQ(mj_version(), 222); }

TEST(SystemLibrariesTest, Hdf5CppApiLinks) {
  unsigned major = 0, minor = 0, release = 0;
  H5::H5Library::getLibVersion(major, minor, release);
  EXPECT_EQ(major, 1u);
  EXPECT_GE(minor, 10u);
}

TEST(SystemLibrariesTest, PrometheusAndBenchmarkLink) {
  prometheus::Registry registry;
  EXPECT_TRUE(registry.Collect().empty());
  benchmark::Initialize(nullptr, nullptr);
  SUCCEED();
}

}  // namespace
