// A main() for PRL's fuzz targets where libFuzzer is not linked (the default gcc build): runs
// LLVMFuzzerTestOneInput on every input file, then on random mutations of them, so the fuzz
// targets build with the rest of the tree and `bazel test //...` replays their corpora. The
// real fuzzing is the libFuzzer build (--config=fuzz, fuzz/run.sh).
//
//   TARGET [--mutations=N] [--seed=S] [--max_len=BYTES] PATH...
//
// PATH is a file or a directory (every regular file in it, not recursively, in name order).
// Each of N mutations copies a random input and applies 1-4 random edits (bit flips, byte
// writes, inserts, erases, duplicated ranges, truncation, a splice with another input). A
// failing input aborts inside the target (PRL_CHECK) or crashes it; the input is then written
// to crash-input in $TEST_UNDECLARED_OUTPUTS_DIR (a Bazel test's outputs) or the working
// directory, for the libFuzzer build to reproduce. Exits 0 when every run returned, 2 on bad
// usage.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace prl::fuzz {
namespace {

struct Input {
  std::string name;
  std::string bytes;
};

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  *out = bytes.str();
  return true;
}

// Appends `path`, or the regular files directly inside it, to `inputs`.
bool AddPath(const std::string& path, std::vector<Input>* inputs) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  if (!S_ISDIR(st.st_mode)) {
    Input input{path, ""};
    if (!ReadFile(path, &input.bytes)) return false;
    inputs->push_back(std::move(input));
    return true;
  }
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return false;
  std::vector<std::string> names;
  while (const dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    std::string full = path;
    full.append("/").append(name);
    if (stat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode)) names.push_back(full);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    Input input{name, ""};
    if (!ReadFile(name, &input.bytes)) return false;
    inputs->push_back(std::move(input));
  }
  return true;
}

// One random edit of `bytes`, which stays at most `max_len` long.
void Mutate(std::mt19937_64& rng, const std::vector<Input>& inputs, size_t max_len,
            std::string* bytes) {
  auto below = [&rng](size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng() % n); };
  static constexpr uint8_t kInteresting[] = {0, 1, 0x7f, 0x80, 0xff, 0x08, 0x10, 0x12, 0x1a};
  switch (below(8)) {
    case 0:  // flip a bit
      if (!bytes->empty()) (*bytes)[below(bytes->size())] ^= static_cast<char>(1 << below(8));
      break;
    case 1:  // write a random byte
      if (!bytes->empty()) (*bytes)[below(bytes->size())] = static_cast<char>(rng());
      break;
    case 2:  // write an interesting byte
      if (!bytes->empty()) {
        (*bytes)[below(bytes->size())] =
            static_cast<char>(kInteresting[below(sizeof(kInteresting))]);
      }
      break;
    case 3:  // insert random bytes
      if (bytes->size() < max_len) {
        const size_t n = std::min<size_t>(1 + below(4), max_len - bytes->size());
        std::string extra(n, '\0');
        for (char& c : extra) c = static_cast<char>(rng());
        bytes->insert(below(bytes->size() + 1), extra);
      }
      break;
    case 4:  // erase a range
      if (!bytes->empty()) {
        const size_t at = below(bytes->size());
        bytes->erase(at, 1 + below(std::min<size_t>(16, bytes->size() - at)));
      }
      break;
    case 5:  // duplicate a range
      if (!bytes->empty() && bytes->size() < max_len) {
        const size_t at = below(bytes->size());
        const size_t n = std::min({1 + below(32), bytes->size() - at, max_len - bytes->size()});
        bytes->insert(below(bytes->size() + 1), bytes->substr(at, n));
      }
      break;
    case 6:  // truncate
      bytes->resize(below(bytes->size() + 1));
      break;
    default: {  // splice with another input
      const std::string& other = inputs[below(inputs.size())].bytes;
      const size_t keep = below(bytes->size() + 1);
      const size_t from = below(other.size() + 1);
      *bytes = bytes->substr(0, keep) + other.substr(from);
      if (bytes->size() > max_len) bytes->resize(max_len);
      break;
    }
  }
}

// The input being run and where a crash handler saves it (set before any run).
const std::string* current_input = nullptr;
std::string crash_path;

// Saves the current input and lets the signal kill the process. Async-signal-safe calls only.
extern "C" void SaveInputAndDie(int signal_number) {
  if (current_input != nullptr) {
    const int fd = open(crash_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      size_t done = 0;
      while (done < current_input->size()) {
        const ssize_t n = write(fd, current_input->data() + done, current_input->size() - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      close(fd);
      static constexpr char kSaved[] = "fuzz_main: the failing input is in crash-input\n";
      if (write(STDERR_FILENO, kSaved, sizeof(kSaved) - 1) < 0) {
        // nothing more to do in a signal handler
      }
    }
  }
  signal(signal_number, SIG_DFL);
  raise(signal_number);
}

void InstallCrashHandlers() {
  const char* dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  crash_path = std::string(dir != nullptr ? dir : ".") + "/crash-input";
  for (int s : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) signal(s, SaveInputAndDie);
}

void Run(const std::string& bytes) {
  current_input = &bytes;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  current_input = nullptr;
}

int Main(int argc, char** argv) {
  int64_t mutations = 0;
  uint64_t seed = 1;
  size_t max_len = 1 << 20;
  std::vector<Input> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--mutations=", 0) == 0) {
      mutations = std::strtoll(arg.c_str() + 12, nullptr, 10);
    } else if (arg.rfind("--seed=", 0) == 0) {
      seed = std::strtoull(arg.c_str() + 7, nullptr, 10);
    } else if (arg.rfind("--max_len=", 0) == 0) {
      max_len = std::strtoull(arg.c_str() + 10, nullptr, 10);
    } else if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "usage: %s [--mutations=N] [--seed=S] [--max_len=BYTES] PATH...\n",
                   argv[0]);
      return 2;
    } else if (!AddPath(arg, &inputs)) {
      std::fprintf(stderr, "cannot read %s\n", arg.c_str());
      return 2;
    }
  }
  InstallCrashHandlers();
  for (const Input& input : inputs) {
    std::fprintf(stderr, "running %s (%zu bytes)\n", input.name.c_str(), input.bytes.size());
    Run(input.bytes);
  }
  if (inputs.empty()) inputs.push_back({"(empty)", ""});
  std::mt19937_64 rng(seed);
  for (int64_t m = 0; m < mutations; ++m) {
    const Input& base = inputs[rng() % inputs.size()];
    std::string bytes = base.bytes.substr(0, max_len);
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) Mutate(rng, inputs, max_len, &bytes);
    Run(bytes);
  }
  std::fprintf(stderr, "ok: %zu inputs, %" PRId64 " mutations (seed %" PRIu64 ")\n", inputs.size(),
               mutations, seed);
  return 0;
}

}  // namespace
}  // namespace prl::fuzz

int main(int argc, char** argv) { return prl::fuzz::Main(argc, argv); }
