#include "replay/shard.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/checksummed_file.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/temp_files.h"
#include "google/protobuf/util/message_differencer.h"
#include "replay/checkpoint.pb.h"

namespace prl::replay {
namespace {

constexpr char kCheckpointFile[] = "replay.ckpt";
// Names of tables deleted since the checkpoint was snapshotted, one per line.
constexpr char kTombstoneFile[] = "replay.deleted";
constexpr size_t kFlushBytes = 1 << 20;

void PutLe(uint64_t v, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// Reads a checkpoint payload front to back; every read is bounds-checked.
class PayloadReader {
 public:
  PayloadReader(absl::string_view data, std::string path) : data_(data), path_(std::move(path)) {}

  absl::StatusOr<uint64_t> Le(int bytes) {
    PRL_ASSIGN_OR_RETURN(absl::string_view raw, Take(bytes));
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i)
      v |= static_cast<uint64_t>(static_cast<unsigned char>(raw[i])) << (8 * i);
    return v;
  }

  absl::StatusOr<absl::string_view> Take(uint64_t n) {
    if (n > data_.size() - offset_) {
      return absl::DataLossError(absl::StrCat("checkpoint '", path_, "' is malformed: needs ", n,
                                              " bytes at offset ", offset_, ", has ",
                                              data_.size() - offset_));
    }
    absl::string_view out = data_.substr(offset_, n);
    offset_ += n;
    return out;
  }

  bool done() const { return offset_ == data_.size(); }

 private:
  absl::string_view data_;
  size_t offset_ = 0;
  const std::string path_;
};

bool SameConfig(const v1::TableConfig& a, const v1::TableConfig& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

}  // namespace

ReplayShard::ReplayShard(const ShardOptions& options, prometheus::Registry& registry)
    : options_(options), metrics_(registry) {}

absl::StatusOr<std::unique_ptr<ReplayShard>> ReplayShard::Create(const ShardOptions& options,
                                                                 prometheus::Registry& registry) {
  std::unique_ptr<ReplayShard> shard(new ReplayShard(options, registry));
  if (!options.checkpoint_dir.empty()) {
    if (mkdir(options.checkpoint_dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(absl::StrCat("--replay_checkpoint_dir: cannot create '",
                                                        options.checkpoint_dir,
                                                        "': ", std::strerror(errno)));
    }
    PRL_ASSIGN_OR_RETURN(shard->directory_lock_,
                         DirectoryLock::Acquire(options.checkpoint_dir, "prl_replay"));
    // the directory is this shard's alone now: any temporary file is a dead writer's
    if (const int n = RemoveStaleTempFiles(options.checkpoint_dir, 0, absl::ZeroDuration())) {
      PRL_LOG(INFO) << "removed " << n << " unfinished checkpoint file(s) from "
                    << options.checkpoint_dir;
    }
    PRL_RETURN_IF_ERROR(shard->Restore());
    if (options.checkpoint_period > absl::ZeroDuration()) {
      shard->checkpointer_ = std::thread([s = shard.get()] { s->PeriodicCheckpoints(); });
    }
  }
  return shard;
}

ReplayShard::~ReplayShard() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (checkpointer_.joinable()) checkpointer_.join();
  absl::MutexLock lock(&mu_);
  for (auto& [name, table] : tables_) table->Close();
}

std::string ReplayShard::checkpoint_path() const {
  if (options_.checkpoint_dir.empty()) return "";
  return absl::StrCat(options_.checkpoint_dir, "/", kCheckpointFile);
}

std::string ReplayShard::tombstone_path() const {
  return absl::StrCat(options_.checkpoint_dir, "/", kTombstoneFile);
}

absl::Status ReplayShard::WriteTombstones() {
  absl::MutexLock file_lock(&tombstone_file_mu_);
  std::string text;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, number] : tombstones_) absl::StrAppend(&text, name, "\n");
  }
  if (text.empty()) {
    if (unlink(tombstone_path().c_str()) != 0 && errno != ENOENT) {
      return absl::InternalError(
          absl::StrCat("cannot remove ", tombstone_path(), ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }
  return WriteFileAtomically(tombstone_path(), text);
}

absl::StatusOr<v1::CreateTableResponse> ReplayShard::CreateTable(const v1::TableConfig& config) {
  v1::TableConfig filled = config;
  PRL_RETURN_IF_ERROR(ValidateTableConfig(options_.limits, &filled));
  absl::MutexLock lock(&mu_);
  v1::CreateTableResponse response;
  auto it = tables_.find(filled.name());
  if (it != tables_.end()) {
    if (!SameConfig(it->second->config(), filled)) {
      return absl::AlreadyExistsError(
          absl::StrCat("table '", filled.name(),
                       "' exists with a different config; delete it first or use "
                       "another name"));
    }
    response.set_created(false);
    *response.mutable_config() = it->second->config();
    return response;
  }
  if (static_cast<int>(tables_.size()) >= options_.max_tables) {
    return absl::ResourceExhaustedError(absl::StrCat("the shard holds ", tables_.size(),
                                                     " tables, its limit (--replay_max_tables)"));
  }
  PRL_ASSIGN_OR_RETURN(std::unique_ptr<Table> table,
                       Table::Create(filled, options_.limits, metrics_.ForTable(filled.name())));
  response.set_created(true);
  *response.mutable_config() = table->config();
  tables_[filled.name()] = std::move(table);
  return response;
}

absl::StatusOr<int64_t> ReplayShard::DeleteTable(const std::string& name) {
  std::shared_ptr<Table> table;
  {
    absl::MutexLock lock(&mu_);
    auto it = tables_.find(name);
    if (it == tables_.end()) return absl::NotFoundError(absl::StrCat("no table '", name, "'"));
    table = std::move(it->second);
    tables_.erase(it);
    tombstones_[name] = ++deletions_;
  }
  table->Close();
  if (!options_.checkpoint_dir.empty()) {
    if (absl::Status s = WriteTombstones(); !s.ok()) {
      PRL_LOG(ERROR) << "table '" << name << "' is deleted, but a restart before the next "
                     << "checkpoint may restore it: " << s;
    }
  }
  return table->size();
}

absl::StatusOr<std::shared_ptr<Table>> ReplayShard::GetTable(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = tables_.find(name);
  if (it != tables_.end()) return it->second;
  std::vector<std::string> names;
  for (const auto& [n, t] : tables_) names.push_back(n);
  return absl::NotFoundError(absl::StrCat("no table '", name, "' on this shard; tables: [",
                                          absl::StrJoin(names, ", "), "]"));
}

absl::StatusOr<v1::InfoResponse> ReplayShard::Info(const std::string& name) const {
  v1::InfoResponse response;
  if (!name.empty()) {
    PRL_ASSIGN_OR_RETURN(std::shared_ptr<Table> table, GetTable(name));
    *response.add_tables() = table->Info();
  } else {
    std::vector<std::shared_ptr<Table>> tables;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [n, t] : tables_) tables.push_back(t);
    }
    for (const auto& t : tables) *response.add_tables() = t->Info();
  }
  absl::MutexLock lock(&mu_);
  response.set_last_checkpoint_path(last_checkpoint_);
  return response;
}

absl::StatusOr<v1::CheckpointResponse> ReplayShard::Checkpoint() {
  if (options_.checkpoint_dir.empty()) {
    return absl::FailedPreconditionError(
        "checkpointing is off for this shard; start prl_replay with --replay_checkpoint_dir");
  }
  absl::MutexLock checkpoint_lock(&checkpoint_mu_);
  const absl::Time start = absl::Now();
  // snapshots are taken together under the shard lock (cheap: copy-on-write), so the file
  // matches one moment of the shard: no table deleted before it, none missing that existed.
  std::vector<TableSnapshot> snapshots;
  uint64_t deletions = 0;  // deletions the snapshot reflects
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [n, t] : tables_) snapshots.push_back(t->TakeSnapshot());
    deletions = deletions_;
  }
  const std::string path = checkpoint_path();
  PRL_ASSIGN_OR_RETURN(auto writer, ChecksummedFileWriter::Create(path));
  std::string buffer;
  PutLe(snapshots.size(), 4, &buffer);
  v1::CheckpointResponse response;
  for (const TableSnapshot& snapshot : snapshots) {
    // traffic continues while the rows are written.
    internal::TableCheckpoint header;
    *header.mutable_config() = snapshot.config;
    header.set_inserted_total(snapshot.inserted_total);
    header.set_sampled_total(snapshot.sampled_total);
    header.set_removed_total(snapshot.removed_total);
    header.set_next_key(snapshot.next_key);
    header.set_limiter_inserted(snapshot.limiter_inserted);
    header.set_limiter_sampled(snapshot.limiter_sampled);
    for (const TableSnapshot::Item& item : snapshot.items) {
      header.add_keys(item.key);
      header.add_priorities(item.priority);
      header.add_times_sampled(item.times_sampled);
    }
    const std::string encoded = header.SerializeAsString();
    PutLe(encoded.size(), 8, &buffer);
    buffer += encoded;
    for (size_t c = 0; c < snapshot.row_bytes.size(); ++c) {
      for (const TableSnapshot::Item& item : snapshot.items) {
        buffer.append(snapshot.Row(c, item), snapshot.row_bytes[c]);
        if (buffer.size() >= kFlushBytes) {
          PRL_RETURN_IF_ERROR(writer->Append(buffer));
          buffer.clear();
        }
      }
    }
    response.add_tables(snapshot.config.name());
  }
  PRL_RETURN_IF_ERROR(writer->Append(buffer));
  PRL_RETURN_IF_ERROR(writer->Commit());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  response.set_path(path);
  response.set_bytes(static_cast<int64_t>(writer->payload_bytes()));
  response.set_duration_seconds(seconds);
  metrics_.checkpoint_seconds().Observe(seconds);
  metrics_.checkpoint_bytes().Set(static_cast<double>(writer->payload_bytes()));
  bool cleared = false;
  {
    absl::MutexLock lock(&mu_);
    last_checkpoint_ = path;
    // the tables deleted before the snapshot are not in the new checkpoint
    for (auto it = tombstones_.begin(); it != tombstones_.end();) {
      if (it->second <= deletions) {
        it = tombstones_.erase(it);
        cleared = true;
      } else {
        ++it;
      }
    }
  }
  if (cleared) {
    if (absl::Status s = WriteTombstones(); !s.ok()) {
      PRL_LOG(WARNING) << "checkpoint written; " << s;
    }
  }
  return response;
}

absl::Status ReplayShard::Restore() {
  const std::string path = checkpoint_path();
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return absl::OkStatus();  // nothing to restore
  // tables deleted after the checkpoint's snapshot stay deleted
  std::set<std::string> deleted;
  if (std::ifstream tombstones(tombstone_path()); tombstones) {
    for (std::string name; std::getline(tombstones, name);) {
      if (!name.empty()) deleted.insert(name);
    }
  }
  // mapped, not read: the tables copy their rows out of it, and a second copy of a large
  // checkpoint in the process's own memory could push a shard restarting under a memory limit
  // over it
  PRL_ASSIGN_OR_RETURN(const std::unique_ptr<MappedChecksummedFile> file,
                       MappedChecksummedFile::Open(path));
  PayloadReader reader(file->payload(), path);
  PRL_ASSIGN_OR_RETURN(const uint64_t num_tables, reader.Le(4));
  if (num_tables > static_cast<uint64_t>(options_.max_tables)) {
    // the file is fine, the limit is lower than when it was written: refuse, keep the file.
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint '", path, "' holds ", num_tables, " tables, more than --replay_max_tables=",
        options_.max_tables, "; raise the limit to restore it (the file is left in place)"));
  }
  std::map<std::string, std::shared_ptr<Table>> restored;
  for (uint64_t t = 0; t < num_tables; ++t) {
    PRL_ASSIGN_OR_RETURN(const uint64_t header_size, reader.Le(8));
    PRL_ASSIGN_OR_RETURN(const absl::string_view encoded, reader.Take(header_size));
    internal::TableCheckpoint header;
    if (!header.ParseFromArray(encoded.data(), static_cast<int>(encoded.size())) ||
        header.priorities_size() != header.keys_size() ||
        header.times_sampled_size() != header.keys_size()) {
      return absl::DataLossError(
          absl::StrCat("checkpoint '", path, "' is malformed: bad header of table ", t));
    }
    // a probe table gives the validated config and its row layout.
    auto probe = Table::Create(header.config(), options_.limits);
    if (!probe.ok()) {
      return absl::DataLossError(
          absl::StrCat("checkpoint '", path, "': table ", t,
                       " cannot be restored here: ", probe.status().message()));
    }
    TableSnapshot snapshot = (*probe)->TakeSnapshot();
    const int64_t n = header.keys_size();
    snapshot.inserted_total = header.inserted_total();
    snapshot.sampled_total = header.sampled_total();
    snapshot.removed_total = header.removed_total();
    snapshot.next_key = header.next_key();
    snapshot.limiter_inserted = header.limiter_inserted();
    snapshot.limiter_sampled = header.limiter_sampled();
    snapshot.rows_per_chunk = std::max<int64_t>(n, 1);
    for (int64_t i = 0; i < n; ++i) {
      snapshot.items.push_back({header.keys(i), i, header.priorities(i), header.times_sampled(i)});
    }
    for (size_t c = 0; c < snapshot.row_bytes.size(); ++c) {
      PRL_ASSIGN_OR_RETURN(const absl::string_view rows, reader.Take(n * snapshot.row_bytes[c]));
      auto chunk = std::make_shared<Chunk>();
      chunk->bytes.assign(rows.begin(), rows.end());
      snapshot.chunks[c].assign(1, std::move(chunk));
    }
    const std::string name = snapshot.config.name();
    if (restored.count(name) > 0) {
      return absl::DataLossError(
          absl::StrCat("checkpoint '", path, "' holds table '", name, "' twice"));
    }
    if (deleted.count(name) > 0) {
      PRL_LOG(INFO) << "not restoring table '" << name << "': it was deleted after " << path
                    << " was written";
      continue;
    }
    auto table = Table::FromSnapshot(snapshot, options_.limits, metrics_.ForTable(name));
    if (!table.ok()) {
      return absl::DataLossError(
          absl::StrCat("checkpoint '", path, "': ", table.status().message()));
    }
    restored[name] = *std::move(table);
  }
  if (!reader.done()) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "' has trailing bytes"));
  }
  absl::MutexLock lock(&mu_);
  tables_ = std::move(restored);
  for (const std::string& name : deleted) tombstones_[name] = 0;  // until the next checkpoint
  last_checkpoint_ = path;
  PRL_LOG(INFO) << "restored " << tables_.size() << " tables from " << path;
  return absl::OkStatus();
}

void ReplayShard::PeriodicCheckpoints() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.checkpoint_period);
      if (stopping_) return;
    }
    auto result = Checkpoint();
    if (!result.ok()) {
      PRL_LOG(ERROR) << "periodic checkpoint failed: " << result.status();
    }
  }
}

}  // namespace prl::replay
