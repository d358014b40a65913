#include "storage/image_config.hpp"

#include <simdjson.h>

namespace berth::storage {

namespace {

using simdjson::dom::element;

std::string str(element e, const char* key) {
  std::string_view v;
  if (e[key].get(v) == simdjson::SUCCESS)
    return std::string{v};
  return {};
}

std::vector<std::string> strings(element e, const char* key) {
  std::vector<std::string> out;
  simdjson::dom::array a;
  if (e[key].get(a) == simdjson::SUCCESS)
    for (auto item : a)
      if (item.is_string())
        out.emplace_back(std::string_view(item));
  return out;
}

std::vector<std::string> keys(element e, const char* key) {
  std::vector<std::string> out;
  simdjson::dom::object o;
  if (e[key].get(o) == simdjson::SUCCESS)
    for (auto [k, v] : o)
      out.emplace_back(k);
  return out;
}

} // namespace

bool parse_image_config(std::string_view json, image_config& out,
                        std::string& err) {
  simdjson::dom::parser parser;
  simdjson::padded_string text{json};
  element doc;
  if (parser.parse(text).get(doc) != simdjson::SUCCESS || !doc.is_object()) {
    err = "image configuration is not a JSON object";
    return false;
  }
  out = {};
  out.created = str(doc, "created");
  out.author = str(doc, "author");
  out.architecture = str(doc, "architecture");
  out.os = str(doc, "os");
  element cfg;
  if (doc["config"].get(cfg) == simdjson::SUCCESS && cfg.is_object()) {
    out.user = str(cfg, "User");
    out.exposed_ports = keys(cfg, "ExposedPorts");
    out.env = strings(cfg, "Env");
    out.entrypoint = strings(cfg, "Entrypoint");
    out.cmd = strings(cfg, "Cmd");
    out.volumes = keys(cfg, "Volumes");
    out.working_dir = str(cfg, "WorkingDir");
    out.stop_signal = str(cfg, "StopSignal");
    simdjson::dom::object labels;
    if (cfg["Labels"].get(labels) == simdjson::SUCCESS)
      for (auto [k, v] : labels)
        if (v.is_string())
          out.labels.emplace(k, std::string_view(v));
  }
  element rootfs;
  if (doc["rootfs"].get(rootfs) == simdjson::SUCCESS)
    out.diff_ids = strings(rootfs, "diff_ids");
  simdjson::dom::array hist;
  if (doc["history"].get(hist) == simdjson::SUCCESS) {
    for (auto h : hist) {
      bool empty = false;
      if (h["empty_layer"].get(empty) != simdjson::SUCCESS)
        empty = false;
      out.history.push_back({str(h, "created"), str(h, "created_by"),
                             str(h, "author"), str(h, "comment"), empty});
    }
  }
  return true;
}

bool parse_image_manifest(std::string_view json, image_manifest& out,
                          std::string& err) {
  simdjson::dom::parser parser;
  simdjson::padded_string text{json};
  element doc;
  if (parser.parse(text).get(doc) != simdjson::SUCCESS || !doc.is_object()) {
    err = "manifest is not a JSON object";
    return false;
  }
  out = {};
  out.media_type = str(doc, "mediaType");
  element config;
  if (doc["config"].get(config) != simdjson::SUCCESS) {
    err = "manifest has no config";
    return false;
  }
  out.config_digest = str(config, "digest");
  simdjson::dom::array layers;
  if (doc["layers"].get(layers) != simdjson::SUCCESS) {
    err = "manifest has no layers";
    return false;
  }
  for (auto l : layers) {
    manifest_layer ml{str(l, "digest"), str(l, "mediaType"), 0};
    if (l["size"].get(ml.size) != simdjson::SUCCESS)
      ml.size = 0;
    out.layers.push_back(std::move(ml));
  }
  if (out.config_digest.empty()) {
    err = "manifest config has no digest";
    return false;
  }
  return true;
}

} // namespace berth::storage
