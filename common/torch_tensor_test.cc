#include "common/torch_tensor.h"

#include "ATen/ATen.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(TorchTensorTest, FloatRoundTrip) {
  HostTensor host = HostTensor::FromFloats({2, 2}, {1, -2, 3.5f, 4});
  at::Tensor t = ToTorch(host.view());
  EXPECT_EQ(t.scalar_type(), at::kFloat);
  EXPECT_EQ(t.sizes().vec(), (std::vector<int64_t>{2, 2}));
  EXPECT_FLOAT_EQ(t[1][0].item<float>(), 3.5f);
  auto back = FromTorch(t * 2);
  ASSERT_TRUE(back.ok());
  EXPECT_THAT(back->data<float>(), ElementsAre(2, -4, 7, 8));
}

TEST(TorchTensorTest, NonContiguousAndIntegerTensors) {
  at::Tensor m = at::arange(6, at::kLong).reshape({2, 3}).t();  // transposed: not contiguous
  auto host = FromTorch(m);
  ASSERT_TRUE(host.ok());
  EXPECT_THAT(host->shape(), ElementsAre(3, 2));
  EXPECT_THAT(host->data<int64_t>(), ElementsAre(0, 3, 1, 4, 2, 5));
  at::Tensor bytes = ToTorch(HostTensor::Copy(host->view()).view());
  EXPECT_TRUE(bytes.equal(m.contiguous()));

  auto u8 = FromTorch(at::full({3}, 200, at::kByte));
  ASSERT_TRUE(u8.ok());
  EXPECT_THAT(u8->data<uint8_t>(), ElementsAre(200, 200, 200));
}

TEST(TorchTensorTest, UnsupportedDtypeIsRejected) {
  auto host = FromTorch(at::zeros({2}, at::kDouble));
  ASSERT_FALSE(host.ok());
  EXPECT_THAT(host.status().message(), HasSubstr("Double"));
  EXPECT_THAT(host.status().message(), HasSubstr("allowed: float32, int64, uint8"));
}

}  // namespace
}  // namespace prl
