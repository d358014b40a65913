// org.varlink.certification, served strictly: each client must make the
// calls of the certification sequence in order, with exactly the expected
// parameters and flags, or it gets a CertificationError saying what was
// wanted and what came.
#pragma once

#include "protocol/gen/org_varlink_certification.hpp"

#include <chrono>
#include <string>
#include <unordered_map>

namespace berth::actors {

class certification : public cert::service {
public:
  void Start(const rpc::call_ptr& c, const cert::Start_in& in) override;
  void Test01(const rpc::call_ptr& c, const cert::Test01_in& in) override;
  void Test02(const rpc::call_ptr& c, const cert::Test02_in& in) override;
  void Test03(const rpc::call_ptr& c, const cert::Test03_in& in) override;
  void Test04(const rpc::call_ptr& c, const cert::Test04_in& in) override;
  void Test05(const rpc::call_ptr& c, const cert::Test05_in& in) override;
  void Test06(const rpc::call_ptr& c, const cert::Test06_in& in) override;
  void Test07(const rpc::call_ptr& c, const cert::Test07_in& in) override;
  void Test08(const rpc::call_ptr& c, const cert::Test08_in& in) override;
  void Test09(const rpc::call_ptr& c, const cert::Test09_in& in) override;
  void Test10(const rpc::call_ptr& c, const cert::Test10_in& in) override;
  void Test11(const rpc::call_ptr& c, const cert::Test11_in& in) override;
  void End(const rpc::call_ptr& c, const cert::End_in& in) override;

  /// The value Test09 returns and Test10 must get back.
  static cert::MyType my_type();

private:
  struct client {
    std::string next; ///< bare name of the method expected next
    std::chrono::steady_clock::time_point started;
  };

  template <class In>
  bool check(const rpc::call_ptr& c, const In& got, const In& want,
             bool more = false, bool oneway = false);
  void advance(const std::string& id, std::string next);
  void expire();

  std::unordered_map<std::string, client> clients_;
};

} // namespace berth::actors
