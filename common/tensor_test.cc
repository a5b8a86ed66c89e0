#include "common/tensor.h"

#include <cmath>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::Tensor FloatProto(std::vector<int64_t> shape, std::vector<float> values) {
  v1::Tensor proto;
  TensorToProto(HostTensor::FromFloats(std::move(shape), values).view(), &proto);
  return proto;
}

TEST(TensorTest, FloatRoundTripThroughProto) {
  v1::Tensor proto = FloatProto({2, 3}, {1, 2, 3, 4, 5, 6});
  EXPECT_EQ(proto.dtype(), v1::Tensor::DTYPE_FLOAT32);
  EXPECT_EQ(proto.data().size(), 24u);
  auto tensor = TensorFromProto(std::move(proto), "obs");
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_THAT(tensor->shape(), ElementsAre(2, 3));
  EXPECT_THAT(tensor->data<float>(), ElementsAre(1, 2, 3, 4, 5, 6));
}

TEST(TensorTest, Int64AndUint8RoundTrip) {
  auto ints = HostTensor::Zeros(DType::kInt64, {3});
  ASSERT_TRUE(ints.ok());
  ints->mutable_data<int64_t>()[2] = -(int64_t{1} << 40);
  v1::Tensor proto;
  TensorToProto(std::move(*ints), &proto);
  auto back = TensorFromProto(std::move(proto), "keys");
  ASSERT_TRUE(back.ok());
  EXPECT_THAT(back->data<int64_t>(), ElementsAre(0, 0, -(int64_t{1} << 40)));

  auto image = HostTensor::Zeros(DType::kUInt8, {4, 4, 3});
  ASSERT_TRUE(image.ok());
  image->mutable_data<uint8_t>()[47] = 255;
  TensorToProto(image->view(), &proto);
  auto view = ViewTensorProto(proto, "pixels");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->num_elements(), 48);
  EXPECT_EQ(view->data<uint8_t>()[47], 255);
}

TEST(TensorTest, ScalarAndEmptyTensorsAreValid) {
  v1::Tensor scalar = FloatProto({}, {3.5f});
  EXPECT_TRUE(ViewTensorProto(scalar, "s").ok());
  v1::Tensor empty = FloatProto({0, 17}, {});
  auto view = ViewTensorProto(empty, "e");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->num_elements(), 0);
}

TEST(TensorTest, ByteLengthMismatchNamesFieldAndSizes) {
  v1::Tensor proto = FloatProto({2, 3}, {1, 2, 3, 4, 5, 6});
  proto.mutable_data()->resize(20);
  auto view = ViewTensorProto(proto, "columns[1]");
  ASSERT_FALSE(view.ok());
  EXPECT_EQ(view.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(view.status().message(), HasSubstr("columns[1]"));
  EXPECT_THAT(view.status().message(), HasSubstr("needs 24 bytes"));
  EXPECT_THAT(view.status().message(), HasSubstr("got 20"));
}

TEST(TensorTest, UnknownDtypeIsRejected) {
  v1::Tensor proto;
  proto.set_dtype(static_cast<v1::Tensor::DType>(99));
  auto view = ViewTensorProto(proto, "z");
  ASSERT_FALSE(view.ok());
  EXPECT_THAT(view.status().message(), HasSubstr("z.dtype"));
  EXPECT_THAT(view.status().message(), HasSubstr("allowed"));
  proto.set_dtype(v1::Tensor::DTYPE_UNSPECIFIED);
  EXPECT_FALSE(ViewTensorProto(proto, "z").ok());
}

TEST(TensorTest, NegativeAndOverflowingShapesAreRejected) {
  v1::Tensor proto;
  proto.set_dtype(v1::Tensor::DTYPE_FLOAT32);
  proto.add_shape(-1);
  EXPECT_THAT(ViewTensorProto(proto, "a").status().message(), HasSubstr("negative"));
  proto.clear_shape();
  for (int i = 0; i < 4; ++i) proto.add_shape(int64_t{1} << 20);
  EXPECT_THAT(ViewTensorProto(proto, "a").status().message(), HasSubstr("too large"));
}

TEST(TensorTest, SpecChecksDtypeShapeAndFiniteness) {
  v1::Tensor proto = FloatProto({4, 17}, std::vector<float>(68, 0.5f));
  TensorSpec spec{"observations", DType::kFloat32, std::vector<int64_t>{-1, 17}, true};
  EXPECT_TRUE(ViewAndCheckTensorProto(proto, spec).ok());

  spec.shape = std::vector<int64_t>{-1, 11};
  auto bad_shape = ViewAndCheckTensorProto(proto, spec);
  EXPECT_THAT(bad_shape.status().message(), HasSubstr("shape is [4, 17], must be [*, 11]"));

  spec.shape.reset();
  spec.dtype = DType::kUInt8;
  EXPECT_THAT(ViewAndCheckTensorProto(proto, spec).status().message(),
              HasSubstr("dtype is float32, must be uint8"));

  spec.dtype.reset();
  std::vector<float> values(68, 0.0f);
  values[30] = std::numeric_limits<float>::quiet_NaN();
  values[40] = std::numeric_limits<float>::infinity();
  v1::Tensor nan_proto = FloatProto({4, 17}, values);
  auto nan = ViewAndCheckTensorProto(nan_proto, spec);
  ASSERT_FALSE(nan.ok());
  EXPECT_THAT(nan.status().message(), HasSubstr("element 30 is NaN"));
  spec.require_finite = false;
  EXPECT_TRUE(ViewAndCheckTensorProto(nan_proto, spec).ok());
}

TEST(TensorTest, FromProtoTakesBytesWithoutCopy) {
  v1::Tensor proto = FloatProto({1024}, std::vector<float>(1024, 1.0f));
  const char* before = proto.data().data();
  auto tensor = TensorFromProto(std::move(proto), "x");
  ASSERT_TRUE(tensor.ok());
  EXPECT_EQ(tensor->bytes().data(), before);
}

TEST(TensorDeathTest, TypedAccessWithWrongTypeAborts) {
  HostTensor t = HostTensor::FromFloats({1}, {1.0f});
  EXPECT_DEATH(t.data<int64_t>(), "accessed as int64");
}

}  // namespace
}  // namespace prl
