// A software TPM 2.0 for tests: `swtpm socket --tpm2` on unix sockets in a
// directory of the test, with its state there too. Started by the
// constructor (which waits at most 10 s for the socket), killed by the
// destructor, and killed by the kernel if the test process dies
// (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>

namespace cmkfs::test_tokens {

class Swtpm {
 public:
  // Same `dir` again = the same TPM (its state); another dir = another TPM.
  explicit Swtpm(std::filesystem::path dir);
  ~Swtpm();
  Swtpm(const Swtpm&) = delete;
  Swtpm& operator=(const Swtpm&) = delete;

  bool started() const { return started_; }
  std::string socket() const { return (dir_ / "sock").string(); }
  // The tpm2-tss TCTI configuration: "swtpm:path=DIR/sock".
  std::string tcti() const { return "swtpm:path=" + socket(); }

 private:
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  bool started_ = false;
};

}  // namespace cmkfs::test_tokens
