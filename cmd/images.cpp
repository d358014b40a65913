// berth's image verbs: pull (with per-layer progress on a terminal), images,
// rmi, tag, history, image inspect.
#include "cmd/cli.hpp"
#include "protocol/json_decode.hpp"

#include <unistd.h>

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

namespace berth::cli {

namespace {

using simdjson::dom::element;

struct parsed {
  simdjson::dom::parser parser;
  simdjson::padded_string text;
  element doc;

  explicit parsed(const std::string& json) : text(json) {
    if (parser.parse(text).get(doc) != simdjson::SUCCESS) {
      std::cerr << "berth: malformed reply\n";
      std::exit(failure);
    }
  }
};

std::string str(element e, const char* key) {
  std::string_view v;
  return e[key].get(v) == simdjson::SUCCESS ? std::string{v} : std::string{};
}

std::string human_size(int64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.3g %s", v, units[u]);
  return buf;
}

/// Shows pull progress: on a terminal one line per blob, redrawn in place;
/// otherwise the daemon's lines as they come.
class progress_view {
public:
  progress_view() : tty_(isatty(STDOUT_FILENO)) {
  }

  void add(const std::string& line) {
    if (!tty_) {
      std::cout << line << std::flush;
      return;
    }
    std::istringstream in{line};
    std::string w1, w2, blob, state;
    in >> w1 >> w2 >> blob >> state;
    if (w1 == "Copying" && w2 == "blob") {
      auto slash = state.find('/');
      if (slash != std::string::npos) {
        auto done = std::stod(state.substr(0, slash));
        auto total = std::stod(state.substr(slash + 1));
        rows_[blob] = bar(done, total);
      } else {
        rows_[blob] = state == "done" ? "done" : line.substr(14 + blob.size());
      }
      if (!order_.count(blob))
        order_[blob] = order_.size();
    } else {
      notes_.push_back(line);
    }
    redraw();
  }

private:
  static std::string bar(double done, double total) {
    constexpr int width = 30;
    int fill = total > 0 ? int(width * done / total) : 0;
    return "[" + std::string(fill, '=') + std::string(width - fill, ' ') +
           "] " + human_size(int64_t(done)) + " / " +
           human_size(int64_t(total));
  }

  void redraw() {
    for (size_t i = 0; i < drawn_; ++i)
      std::cout << "\x1b[1A\x1b[2K";
    drawn_ = 0;
    for (auto& n : notes_)
      std::cout << n;
    notes_.clear();
    std::vector<std::string> lines(order_.size());
    for (auto& [blob, pos] : order_)
      lines[pos] = "Copying blob " + blob + " " + rows_[blob];
    for (auto& l : lines) {
      std::cout << l << '\n';
      ++drawn_;
    }
    std::cout << std::flush;
  }

  bool tty_;
  std::map<std::string, std::string> rows_;
  std::map<std::string, size_t> order_;
  std::vector<std::string> notes_;
  size_t drawn_ = 0;
};

int pull(const std::string& addr, const std::vector<std::string>& args) {
  json::writer w;
  std::string name, creds, cert_dir;
  int tls = -1;
  bool quiet = false;
  for (size_t i = 0; i < args.size(); ++i) {
    auto& a = args[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (a.starts_with(flag + "="))
        return a.substr(flag.size() + 1);
      if (i + 1 >= args.size())
        usage_error(flag + " needs a value");
      return args[++i];
    };
    if (a == "-q" || a == "--quiet")
      quiet = true;
    else if (a == "--tls-verify" || a == "--tls-verify=true")
      tls = 1;
    else if (a == "--tls-verify=false")
      tls = 0;
    else if (a.starts_with("--creds"))
      creds = value("--creds");
    else if (a.starts_with("--cert-dir"))
      cert_dir = value("--cert-dir");
    else if (a.starts_with("-"))
      usage_error("unknown option for pull: " + a);
    else if (name.empty())
      name = a;
    else
      usage_error("pull takes one image name");
  }
  if (name.empty())
    usage_error("pull needs an image name");
  w.begin_object();
  w.key("name"), w.value(name);
  w.key("creds"), w.value(creds);
  w.key("certDir"), w.value(cert_dir);
  if (tls >= 0)
    w.key("tlsVerify"), w.value(tls == 1);
  w.end_object();
  session s{addr};
  progress_view view;
  std::string id;
  for (auto r = s.call("io.podman.PullImage", w.out(), {.more = true});;
       r = s.next()) {
    if (!r.error.empty())
      return print_error(r);
    parsed p{r.parameters};
    element reply;
    if (p.doc["reply"].get(reply) == simdjson::SUCCESS) {
      simdjson::dom::array logs;
      if (!quiet && reply["logs"].get(logs) == simdjson::SUCCESS)
        for (auto l : logs)
          if (l.is_string())
            view.add(std::string{std::string_view(l)});
      if (auto v = str(reply, "id"); !v.empty())
        id = v;
    }
    if (!r.continues)
      break;
  }
  std::cout << id << '\n';
  return ok;
}

int images(const std::string& addr, const std::vector<std::string>& args) {
  bool quiet = false, as_json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "-q" || args[i] == "--quiet")
      quiet = true;
    else if (args[i] == "--format=json" ||
             (args[i] == "--format" && i + 1 < args.size() &&
              args[++i] == "json"))
      as_json = true;
    else
      usage_error("unknown option for images: " + args[i]);
  }
  session s{addr};
  auto r = s.call("io.podman.ListImages", "");
  if (!r.error.empty())
    return print_error(r);
  parsed p{r.parameters};
  simdjson::dom::array list;
  if (p.doc["images"].get(list) != simdjson::SUCCESS)
    return failure;
  if (as_json) {
    std::cout << simdjson::minify(list) << '\n';
    return ok;
  }
  if (!quiet)
    std::cout << std::left << std::setw(40) << "REPOSITORY" << std::setw(12)
              << "TAG" << std::setw(14) << "IMAGE ID" << std::setw(28)
              << "CREATED" << "SIZE\n";
  for (auto img : list) {
    auto id = str(img, "id").substr(0, 12);
    if (quiet) {
      std::cout << id << '\n';
      continue;
    }
    int64_t size = 0;
    if (img["size"].get(size) != simdjson::SUCCESS)
      size = 0;
    std::vector<std::string> tags;
    simdjson::dom::array names;
    if (img["repoTags"].get(names) == simdjson::SUCCESS)
      for (auto n : names)
        tags.emplace_back(std::string_view(n));
    if (tags.empty())
      tags.push_back("<none>:<none>");
    for (auto& t : tags) {
      auto colon = t.rfind(':');
      std::cout << std::left << std::setw(40) << t.substr(0, colon)
                << std::setw(12) << t.substr(colon + 1) << std::setw(14) << id
                << std::setw(28) << str(img, "created") << human_size(size)
                << '\n';
    }
  }
  return ok;
}

int rmi(const std::string& addr, const std::vector<std::string>& args) {
  bool force = false;
  std::vector<std::string> names;
  for (auto& a : args) {
    if (a == "-f" || a == "--force")
      force = true;
    else
      names.push_back(a);
  }
  if (names.empty())
    usage_error("rmi needs at least one image");
  session s{addr};
  int rc = ok;
  for (auto& n : names) {
    json::writer w;
    w.begin_object();
    w.key("name"), w.value(n);
    w.key("force"), w.value(force);
    w.end_object();
    auto r = s.call("io.podman.RemoveImage", w.out());
    if (!r.error.empty()) {
      rc = print_error(r);
      continue;
    }
    std::cout << str(parsed{r.parameters}.doc, "image") << '\n';
  }
  return rc;
}

int tag(const std::string& addr, const std::vector<std::string>& args) {
  if (args.size() < 2)
    usage_error("tag needs an image and at least one new name");
  session s{addr};
  for (size_t i = 1; i < args.size(); ++i) {
    json::writer w;
    w.begin_object();
    w.key("name"), w.value(args[0]);
    w.key("tagged"), w.value(args[i]);
    w.end_object();
    auto r = s.call("io.podman.TagImage", w.out());
    if (!r.error.empty())
      return print_error(r);
  }
  return ok;
}

int history(const std::string& addr, const std::vector<std::string>& args) {
  if (args.size() != 1)
    usage_error("history needs one image");
  session s{addr};
  auto r = s.call("io.podman.HistoryImage",
                  "{\"name\":" + json::quote(args[0]) + "}");
  if (!r.error.empty())
    return print_error(r);
  parsed p{r.parameters};
  simdjson::dom::array list;
  if (p.doc["history"].get(list) != simdjson::SUCCESS)
    return failure;
  std::cout << std::left << std::setw(14) << "ID" << std::setw(28)
            << "CREATED" << std::setw(46) << "CREATED BY" << "SIZE\n";
  for (auto h : list) {
    int64_t size = 0;
    if (h["size"].get(size) != simdjson::SUCCESS)
      size = 0;
    auto by = str(h, "createdBy");
    if (by.size() > 44)
      by = by.substr(0, 41) + "...";
    std::cout << std::left << std::setw(14) << str(h, "id").substr(0, 12)
              << std::setw(28) << str(h, "created") << std::setw(46) << by
              << human_size(size) << '\n';
  }
  return ok;
}

int inspect(const std::string& addr, const std::vector<std::string>& args) {
  if (args.empty())
    usage_error("image inspect needs at least one image");
  session s{addr};
  int rc = ok;
  std::cout << "[";
  bool first = true;
  for (auto& n : args) {
    auto r = s.call("io.podman.InspectImage",
                    "{\"name\":" + json::quote(n) + "}");
    if (!r.error.empty()) {
      rc = print_error(r);
      continue;
    }
    std::cout << (first ? "" : ",") << str(parsed{r.parameters}.doc, "image");
    first = false;
  }
  std::cout << "]\n";
  return rc;
}

} // namespace

bool is_image_command(const std::string& verb) {
  return verb == "pull" || verb == "images" || verb == "rmi" ||
         verb == "tag" || verb == "history" || verb == "image";
}

int image_command(const std::string& addr, const std::string& verb,
                  const std::vector<std::string>& args) {
  if (verb == "pull")
    return pull(addr, args);
  if (verb == "images")
    return images(addr, args);
  if (verb == "rmi")
    return rmi(addr, args);
  if (verb == "tag")
    return tag(addr, args);
  if (verb == "history")
    return history(addr, args);
  if (!args.empty() && args[0] == "inspect")
    return inspect(addr, {args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "ls")
    return images(addr, {args.begin() + 1, args.end()});
  usage_error("unknown image command");
}

} // namespace berth::cli
