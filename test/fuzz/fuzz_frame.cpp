// libFuzzer target: bytes split into reads at chosen points go through the
// frame reader; every message is parsed in place with simdjson, decoded as
// the parameters of an io.podman method, encoded again and checked.
//
// Input layout: [method selector] [limit selector] [n] n x [u16 read size]
// then the byte stream. Read sizes repeat when the stream is longer.
#include "protocol/frame.hpp"
#include "protocol/gen/io_podman.hpp"
#include "protocol/json_decode.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace json = berth::json;
namespace podman = berth::podman;
namespace rpc = berth::rpc;
using berth::varlink::frame_reader;

namespace {

// In method-table order (sorted); checked against the table at start-up.
#define PODMAN_METHODS(X)                                                      \
  X(Attach) X(BuildImage) X(Commit) X(ContainerArtifacts)                      \
  X(ContainerCheckpoint)                                                       \
  X(ContainerConfig) X(ContainerExists) X(ContainerInspectData)                \
  X(ContainerRestore) X(ContainerRunlabel) X(ContainerStateData)               \
  X(CreateContainer) X(CreatePod) X(DeleteStoppedContainers)                   \
  X(DeleteUnusedImages) X(ExportContainer) X(ExportImage)                      \
  X(GetAttachSockets) X(GetContainer) X(GetContainerLogs)                      \
  X(GetContainerStats) X(GetContainerStatsWithHistory)                         \
  X(GetContainersByContext) X(GetImage) X(GetInfo) X(GetPod)                   \
  X(GetPodStats) X(GetPodsByContext) X(GetVersion) X(GetVolumes)               \
  X(HistoryImage) X(ImageExists) X(ImageSave) X(ImagesPrune)                   \
  X(ImportImage) X(InspectContainer) X(InspectImage) X(InspectPod)             \
  X(KillContainer) X(KillPod) X(ListContainerChanges)                          \
  X(ListContainerMounts) X(ListContainerProcesses) X(ListContainers)           \
  X(ListImages) X(ListPods) X(LoadImage) X(MountContainer)                     \
  X(PauseContainer) X(PausePod) X(PodStateData) X(PullImage)                   \
  X(PushImage) X(ReceiveFile) X(RemoveContainer) X(RemoveImage)                \
  X(RemovePod) X(RestartContainer) X(RestartPod) X(SearchImages)               \
  X(SendFile) X(StartContainer) X(StartPod) X(StopContainer) X(StopPod)        \
  X(TagImage) X(TopPod) X(UnmountContainer) X(UnpauseContainer)                \
  X(UnpausePod) X(VolumeCreate) X(VolumeRemove) X(VolumesPrune)                \
  X(WaitContainer)

[[noreturn]] void die(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz_frame: %s %.*s\n", what, int(detail.size()),
               detail.data());
  std::abort();
}

// Encodes the input struct of a decoded call; "" if the call has another
// type than the method says.
template <class In>
std::string encode_in(const rpc::call& c) {
  auto* typed = dynamic_cast<const rpc::typed_call<In>*>(&c);
  if (typed == nullptr)
    return {};
  json::writer w;
  encode(w, typed->in);
  return w.take();
}

using encoder = std::string (*)(const rpc::call&);

struct method_entry {
  const char* name;
  encoder encode;
};

#define METHOD_ENTRY(M) {#M, &encode_in<podman::M##_in>},
const method_entry entries[] = {PODMAN_METHODS(METHOD_ENTRY)};

void check_table() {
  auto& methods = podman::info.methods;
  if (methods.size() != std::size(entries))
    die("the method list is out of date");
  for (size_t i = 0; i < methods.size(); ++i)
    if (methods[i].name != entries[i].name)
      die("the method list is out of date at", methods[i].name);
}

// The method a message names, else the one the selector picks.
size_t pick_method(const json::element& root, uint8_t selector) {
  std::string_view name;
  if (root.is_object() && root["method"].get(name) == simdjson::SUCCESS &&
      name.starts_with("io.podman.")) {
    if (auto* m = podman::info.find(name.substr(10)))
      return m->index;
  }
  return selector % podman::info.methods.size();
}

// Decodes, encodes, decodes the encoding and encodes again: the two
// encodings must be equal valid JSON.
void check_call(size_t index, const json::element* params) {
  auto& m = podman::info.methods[index];
  json::decode_error err;
  auto c = m.decode(params, err);
  if (!c) {
    if (err.field.empty())
      die("decode failed without naming a field");
    return;
  }
  auto first = entries[index].encode(*c);
  if (first.empty())
    die("decoded call has the wrong type for", m.name);
  simdjson::dom::parser parser;
  simdjson::padded_string text{first};
  json::element again;
  if (parser.parse(text).get(again) != simdjson::SUCCESS)
    die("encoding is not JSON:", first);
  auto c2 = m.decode(&again, err);
  if (!c2)
    die("encoding does not decode:", first);
  auto second = entries[index].encode(*c2);
  if (second != first)
    die("encoding is not stable:", first + " vs " + second);
}

void check_message(std::string_view msg, uint8_t selector,
                   simdjson::dom::parser& parser) {
  // Parsed in place: the frame reader promises the padding.
  json::element root;
  if (parser.parse(msg.data(), msg.size(), false).get(root) !=
      simdjson::SUCCESS)
    return;
  auto index = pick_method(root, selector);
  json::element params;
  if (root.is_object() &&
      root["parameters"].get(params) == simdjson::SUCCESS)
    check_call(index, &params);
  else
    check_call(index, &root);
  // And once with no parameters at all.
  check_call(index, nullptr);
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  check_table();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3)
    return 0;
  uint8_t selector = data[0];
  static constexpr size_t limits[] = {16u << 20, 64, 1024, 300};
  size_t limit = limits[data[1] & 3];
  size_t n = data[2] % 17;
  data += 3;
  size -= 3;
  std::vector<size_t> reads;
  for (size_t i = 0; i < n && size >= 2; ++i) {
    reads.push_back(1 + (size_t(data[0]) | size_t(data[1]) << 8));
    data += 2;
    size -= 2;
  }
  if (reads.empty())
    reads.push_back(size ? size : 1);

  frame_reader reader{limit};
  simdjson::dom::parser parser;
  size_t next_read = 0;
  while (size > 0) {
    size_t want = reads[next_read++ % reads.size()];
    auto span = reader.prepare(want);
    if (span.empty())
      die("prepare gave no room");
    size_t len = std::min({want, span.size(), size});
    std::memcpy(span.data(), data, len);
    reader.commit(len);
    data += len;
    size -= len;
    std::string_view msg;
    for (;;) {
      auto st = reader.next(msg);
      if (st == frame_reader::status::oversize)
        return 0; // the server closes the connection here
      if (st == frame_reader::status::incomplete)
        break;
      if (msg.size() > limit)
        die("message over the limit");
      if (std::memchr(msg.data(), 0, msg.size()) != nullptr)
        die("message holds a NUL");
      check_message(msg, selector, parser);
    }
  }
  auto rest = reader.take_rest();
  if (rest.size() > limit)
    die("more than a message left over");
  return 0;
}
