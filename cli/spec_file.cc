#include "cli/spec_file.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace prl::cli {
namespace {

// Collects "source:line:column: message" lines (protobuf counts from 0, editors from 1).
class ErrorCollector final : public google::protobuf::io::ErrorCollector {
 public:
  explicit ErrorCollector(absl::string_view source) : source_(source) {}
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    errors_.push_back(absl::StrCat(source_, ":", line + 1, ":", column + 1, ": ", message));
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  const std::string source_;
  std::vector<std::string> errors_;
};

}  // namespace

absl::StatusOr<v1::ExperimentSpec> ParseSpec(absl::string_view text, absl::string_view source) {
  v1::ExperimentSpec spec;
  ErrorCollector errors(source);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  google::protobuf::io::ArrayInputStream input(text.data(), static_cast<int>(text.size()));
  if (!parser.Parse(&input, &spec)) {
    std::string message = absl::StrJoin(errors.errors(), "\n");
    if (message.empty()) message = absl::StrCat(source, ": not a valid prl.v1.ExperimentSpec");
    return absl::InvalidArgumentError(message);
  }
  return spec;
}

absl::StatusOr<v1::ExperimentSpec> ReadSpecFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read spec file '", path, "'"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseSpec(text.str(), path);
}

}  // namespace prl::cli
