#include "storage/search.hpp"

#include "storage/registry.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

namespace berth::storage {

namespace {

constexpr int64_t default_limit = 25;

/// What one registry answered.
struct registry_answer {
  std::string registry;
  std::vector<std::string> repositories;
  bool ok = false;
  std::string error;
};

registry_options options_for(const search_request& req,
                             const std::string& registry) {
  auto opts = options_for_registry(registry, req.tls_verify,
                                   req.insecure_registries);
  // A search answers now or not at all; an unreachable registry should
  // not hold up the others' results for long.
  opts.retries = 1;
  opts.timeout = std::chrono::seconds{10};
  return opts;
}

// Whether the filters can keep anything: catalog entries are neither
// official nor automated and have no stars.
bool filters_pass(const search_request& req) {
  return !req.is_official.value_or(false) &&
         !req.is_automated.value_or(false) && req.star_count <= 0;
}

} // namespace

void split_search_query(const std::string& query, std::string& registry,
                        std::string& term) {
  registry.clear();
  term = query;
  auto slash = query.find('/');
  if (slash == std::string::npos)
    return;
  auto first = query.substr(0, slash);
  if (first.find_first_of(".:") != std::string::npos || first == "localhost") {
    registry = first;
    term = query.substr(slash + 1);
  }
}

bool search_images(const search_request& req, std::vector<search_result>& out,
                   std::string& err) {
  out.clear();
  std::string named, term;
  split_search_query(req.query, named, term);
  std::vector<registry_answer> answers;
  if (!named.empty())
    answers.push_back({named, {}, false, {}});
  else
    for (auto& r : req.search_registries)
      answers.push_back({r, {}, false, {}});
  if (answers.empty())
    return true;

  // Each registry lists its catalog on a thread of its own.
  std::vector<std::thread> threads;
  for (auto& a : answers)
    threads.emplace_back([&req, &a] {
      registry_client client{a.registry, options_for(req, a.registry)};
      a.ok = client.catalog(a.repositories, 0, a.error);
    });
  for (auto& t : threads)
    t.join();

  auto limit = req.limit.value_or(0) > 0 ? *req.limit : default_limit;
  bool any_ok = false;
  std::string errors;
  for (auto& a : answers) {
    if (!a.ok) {
      errors += (errors.empty() ? "" : "\n") + a.error;
      continue;
    }
    any_ok = true;
    if (!filters_pass(req))
      continue;
    int64_t kept = 0;
    for (auto& repo : a.repositories) {
      if (kept == limit)
        break;
      if (repo.find(term) == std::string::npos)
        continue;
      search_result r;
      r.registry = a.registry;
      r.name = a.registry + "/" + repo;
      out.push_back(std::move(r));
      ++kept;
    }
  }
  if (!any_ok)
    err = errors;
  return any_ok;
}

} // namespace berth::storage
