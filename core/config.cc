#include "cmkfs/config.h"

#include <toml++/toml.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <functional>
#include <vector>

#include "cmkfs/file_trust.h"
#include "cmkfs/units.h"

namespace cmkfs {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kLogLevels[] = {"trace", "debug", "info",
                                           "warn",  "error", "off"};

std::string_view TypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "table";
    case toml::node_type::array:
      return "array";
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "floating-point number";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// Position and full name of the value being read, for error messages.
struct Where {
  std::string_view source_name;
  const toml::node& node;
  std::string key;  // "watcher.poll_interval"

  Status Error(std::string_view what) const {
    // Appended piece by piece: GCC 12 at -O3 reports a false -Werror=restrict
    // in the std::string insert behind `":" + std::to_string(...)`.
    std::string m(source_name);
    m += ':';
    m += std::to_string(node.source().begin.line);
    m += ": key '";
    m += key;
    m += "': ";
    m += what;
    return InvalidArgumentError(std::move(m));
  }
  Status WrongType(std::string_view expected) const {
    return Error("expected " + std::string(expected) + ", got " +
                 std::string(TypeName(node)));
  }
};

Status ReadString(const Where& w, std::string* out) {
  const auto* v = w.node.as_string();
  if (v == nullptr) return w.WrongType("a string");
  *out = v->get();
  return Status::Ok();
}

Status ReadPath(const Where& w, bool allow_empty, std::filesystem::path* out) {
  std::string s;
  CMKFS_RETURN_IF_ERROR(ReadString(w, &s));
  if (s.empty() && !allow_empty) {
    return w.Error("must not be empty; expected a path");
  }
  *out = s;
  return Status::Ok();
}

Status ReadBool(const Where& w, bool* out) {
  const auto* v = w.node.as_boolean();
  if (v == nullptr) return w.WrongType("a boolean (true or false)");
  *out = v->get();
  return Status::Ok();
}

Status ReadInteger(const Where& w, int64_t min, int64_t max, int64_t* out) {
  const auto* v = w.node.as_integer();
  if (v == nullptr) return w.WrongType("an integer");
  int64_t value = v->get();
  if (value < min || value > max) {
    return w.Error(std::to_string(value) + " is out of range (" +
                   std::to_string(min) + ".." + std::to_string(max) + ")");
  }
  *out = value;
  return Status::Ok();
}

template <typename T>
Status ReadUnsigned(const Where& w, int64_t min, int64_t max, T* out) {
  // Initialized: at -Os GCC 12 cannot see that ReadInteger sets it on success
  // (-Werror=maybe-uninitialized in a MinSizeRel build).
  int64_t value = 0;
  CMKFS_RETURN_IF_ERROR(ReadInteger(w, min, max, &value));
  *out = static_cast<T>(value);
  return Status::Ok();
}

Status ReadDuration(const Where& w, milliseconds min, milliseconds* out) {
  const auto* v = w.node.as_string();
  if (v == nullptr) {
    std::string got = std::string(TypeName(w.node));
    if (const auto* i = w.node.as_integer()) got = std::to_string(i->get());
    return w.Error("expected a duration such as \"5s\" or \"PT5S\", got " +
                   got);
  }
  Result<milliseconds> d = ParseDuration(v->get());
  if (!d.ok()) return w.Error(d.status().message());
  if (*d < min) {
    return w.Error(FormatDuration(*d) + " is below the minimum of " +
                   FormatDuration(min));
  }
  *out = *d;
  return Status::Ok();
}

Status ReadSize(const Where& w, uint64_t min, uint64_t* out) {
  uint64_t bytes;
  if (const auto* i = w.node.as_integer()) {
    if (i->get() < 0) {
      return w.Error(std::to_string(i->get()) + " is not a size");
    }
    bytes = static_cast<uint64_t>(i->get());
  } else if (const auto* s = w.node.as_string()) {
    Result<uint64_t> parsed = ParseSize(s->get());
    if (!parsed.ok()) return w.Error(parsed.status().message());
    bytes = *parsed;
  } else {
    return w.WrongType("a size such as \"32M\"");
  }
  if (bytes < min) {
    return w.Error(FormatSize(bytes) + " is below the minimum of " +
                   FormatSize(min));
  }
  *out = bytes;
  return Status::Ok();
}

// A size that must also be a multiple of 4096 bytes and at most `max`.
Status ReadSizeInRange(const Where& w, uint64_t min, uint64_t max,
                       uint64_t* out) {
  uint64_t bytes;
  CMKFS_RETURN_IF_ERROR(ReadSize(w, min, &bytes));
  if (bytes > max || bytes % 4096 != 0) {
    return w.Error(
        std::to_string(bytes) +
        " bytes is not accepted: use a multiple of 4096 bytes from " +
        FormatSize(min) + " to " + FormatSize(max));
  }
  *out = bytes;
  return Status::Ok();
}

// "0600" (octal digits in a string) or an octal integer (0o600).
Status ReadMode(const Where& w, uint32_t* out) {
  static constexpr std::string_view kExpected =
      "expected a string of octal digits such as \"0600\" or an octal "
      "integer such as 0o600";
  uint32_t mode = 0;
  if (const auto* i = w.node.as_integer()) {
    if (!(i->flags() & toml::value_flags::format_as_octal) || i->get() < 0 ||
        i->get() > 07777) {
      return w.Error(std::string(kExpected) + ", got " +
                     std::to_string(i->get()));
    }
    mode = static_cast<uint32_t>(i->get());
  } else if (const auto* s = w.node.as_string()) {
    const std::string& text = s->get();
    bool valid = !text.empty() && text.size() <= 5;
    for (char c : text) valid = valid && c >= '0' && c <= '7';
    if (valid) mode = static_cast<uint32_t>(std::stoul(text, nullptr, 8));
    if (!valid || mode > 07777) {
      return w.Error(std::string(kExpected) + ", got \"" + text + "\"");
    }
  } else {
    return w.Error(std::string(kExpected) + ", got " +
                   std::string(TypeName(w.node)));
  }
  *out = mode;
  return Status::Ok();
}

Status ReadLogLevel(const Where& w, std::string* out) {
  std::string level;
  CMKFS_RETURN_IF_ERROR(ReadString(w, &level));
  for (std::string_view known : kLogLevels) {
    if (level == known) {
      *out = level;
      return Status::Ok();
    }
  }
  return w.Error("'" + level +
                 "' is not a log level; expected trace, debug, info, warn, "
                 "error or off");
}

Status ReadMetricsListen(const Where& w, Config::Metrics* out) {
  std::string text;
  CMKFS_RETURN_IF_ERROR(ReadString(w, &text));
  Result<Config::Metrics> parsed = ParseMetricsListen(text);
  if (!parsed.ok()) return w.Error(parsed.status().message());
  *out = std::move(parsed).value();
  return Status::Ok();
}

using Reader = std::function<Status(const Where&)>;

struct KeySpec {
  std::string_view name;
  Reader read;  // null for a sub-table, handled by `table`
  std::vector<KeySpec> table;
};

// Applies `specs` to `table`. `prefix` is "" at the top level, else "name.".
Status ApplyTable(const toml::table& table, std::string_view source_name,
                  const std::string& prefix,
                  const std::vector<KeySpec>& specs) {
  for (const auto& [key, node] : table) {
    std::string name(key.str());
    std::string full_key = prefix + name;
    const KeySpec* spec = nullptr;
    for (const KeySpec& s : specs) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) {
      std::string known;
      for (const KeySpec& s : specs) {
        if (!known.empty()) known += ", ";
        known += s.name;
      }
      std::string scope =
          prefix.empty()
              ? std::string("known top-level keys")
              : "known keys in [" + prefix.substr(0, prefix.size() - 1) + "]";
      return InvalidArgumentError(std::string(source_name) + ":" +
                                  std::to_string(key.source().begin.line) +
                                  ": unknown key '" + full_key + "'; " + scope +
                                  ": " + known);
    }
    Where where{source_name, node, full_key};
    if (spec->read) {
      CMKFS_RETURN_IF_ERROR(spec->read(where));
      continue;
    }
    const toml::table* sub = node.as_table();
    if (sub == nullptr) return where.WrongType("a table");
    CMKFS_RETURN_IF_ERROR(
        ApplyTable(*sub, source_name, full_key + ".", spec->table));
  }
  return Status::Ok();
}

std::vector<KeySpec> Schema(Config& c) {
  using std::chrono::milliseconds;
  return {
      {"state_dir",
       [&](const Where& w) { return ReadPath(w, false, &c.state_dir); },
       {}},
      {"log_level",
       [&](const Where& w) { return ReadLogLevel(w, &c.log_level); },
       {}},
      {"keystore",
       nullptr,
       {
           {"dir",
            [&](const Where& w) { return ReadPath(w, true, &c.keystore.dir); },
            {}},
           {"master_key_file",
            [&](const Where& w) {
              return ReadPath(w, true, &c.keystore.master_key_file);
            },
            {}},
           {"passphrase_file",
            [&](const Where& w) {
              return ReadPath(w, true, &c.keystore.passphrase_file);
            },
            {}},
           {"master_key",
            [&](const Where& w) {
              CMKFS_RETURN_IF_ERROR(ReadString(w, &c.keystore.master_key));
              const std::string& v = c.keystore.master_key;
              if (v == "file" || v == "passphrase" || v == "tpm2") {
                return Status::Ok();
              }
              return w.Error("'" + v +
                             "' is not a master key source; expected file, "
                             "passphrase or tpm2");
            },
            {}},
           {"tpm2_sealed_file",
            [&](const Where& w) {
              return ReadPath(w, true, &c.keystore.tpm2_sealed_file);
            },
            {}},
           {"tpm2_tcti",
            [&](const Where& w) {
              return ReadString(w, &c.keystore.tpm2_tcti);
            },
            {}},
           {"tpm2_pcrs",
            [&](const Where& w) {
              return ReadString(w, &c.keystore.tpm2_pcrs);
            },
            {}},
           {"service",
            [&](const Where& w) { return ReadString(w, &c.keystore.service); },
            {}},
           {"credential",
            [&](const Where& w) {
              return ReadPath(w, true, &c.keystore.credential);
            },
            {}},
           {"credentials_dir",
            [&](const Where& w) {
              return ReadPath(w, true, &c.keystore.credentials_dir);
            },
            {}},
       }},
      {"watcher",
       nullptr,
       {
           {"poll_interval",
            [&](const Where& w) {
              return ReadDuration(w, milliseconds(100),
                                  &c.watcher.poll_interval);
            },
            {}},
           {"auto_rotation_window",
            [&](const Where& w) {
              return ReadDuration(w, milliseconds(100),
                                  &c.watcher.auto_rotation_window);
            },
            {}},
           {"on_seal",
            [&](const Where& w) { return ReadString(w, &c.watcher.on_seal); },
            {}},
           {"unreachable_grace",
            [&](const Where& w) {
              return ReadDuration(w, milliseconds(100),
                                  &c.watcher.unreachable_grace);
            },
            {}},
       }},
      {"defaults",
       nullptr,
       {
           {"subscription",
            [&](const Where& w) {
              return ReadString(w, &c.defaults.subscription);
            },
            {}},
           {"resource_group",
            [&](const Where& w) {
              return ReadString(w, &c.defaults.resource_group);
            },
            {}},
           {"region",
            [&](const Where& w) { return ReadString(w, &c.defaults.region); },
            {}},
       }},
      {"limits",
       nullptr,
       {
           {"disk_encryption_sets_per_region",
            [&](const Where& w) {
              return ReadUnsigned(w, 1, 1000000,
                                  &c.limits.disk_encryption_sets_per_region);
            },
            {}},
           {"max_disk_size",
            [&](const Where& w) {
              return ReadSizeInRange(w, kMinMaxDiskSize, kMaxMaxDiskSize,
                                     &c.limits.max_disk_size);
            },
            {}},
       }},
      {"pkcs11",
       nullptr,
       {
           {"module",
            [&](const Where& w) { return ReadPath(w, true, &c.pkcs11.module); },
            {}},
           {"token_label",
            [&](const Where& w) {
              return ReadString(w, &c.pkcs11.token_label);
            },
            {}},
           {"pin_file",
            [&](const Where& w) {
              return ReadPath(w, true, &c.pkcs11.pin_file);
            },
            {}},
           {"init_args",
            [&](const Where& w) { return ReadString(w, &c.pkcs11.init_args); },
            {}},
       }},
      {"mount",
       nullptr,
       {
           {"uid",
            [&](const Where& w) {
              return ReadUnsigned(w, 0, 4294967294, &c.mount.uid);
            },
            {}},
           {"gid",
            [&](const Where& w) {
              return ReadUnsigned(w, 0, 4294967294, &c.mount.gid);
            },
            {}},
           {"mode",
            [&](const Where& w) { return ReadMode(w, &c.mount.mode); },
            {}},
           {"allow_other",
            [&](const Where& w) { return ReadBool(w, &c.mount.allow_other); },
            {}},
           {"mountpoint",
            [&](const Where& w) {
              return ReadPath(w, true, &c.mount.mountpoint);
            },
            {}},
       }},
      {"engine",
       nullptr,
       {
           {"cache",
            [&](const Where& w) {
              return ReadSize(w, 1u << 20, &c.engine.cache_bytes);
            },
            {}},
           {"fuse_threads",
            [&](const Where& w) {
              return ReadUnsigned(w, 0, 1024, &c.engine.fuse_threads);
            },
            {}},
           {"backing_io",
            [&](const Where& w) {
              std::string v;
              CMKFS_RETURN_IF_ERROR(ReadString(w, &v));
              if (v == "buffered") {
                c.engine.backing_io = Config::Engine::BackingIo::kBuffered;
              } else if (v == "direct") {
                c.engine.backing_io = Config::Engine::BackingIo::kDirect;
              } else {
                return w.Error("'" + v +
                               "' is not a backing I/O mode; expected "
                               "buffered or direct");
              }
              return Status::Ok();
            },
            {}},
       }},
      {"metrics",
       nullptr,
       {
           {"listen",
            [&](const Where& w) { return ReadMetricsListen(w, &c.metrics); },
            {}},
       }},
  };
}

}  // namespace

Result<Config::Metrics> ParseMetricsListen(std::string_view text) {
  constexpr std::string_view kAccepted =
      "expected \"HOST:PORT\" (e.g. \"127.0.0.1:9469\" or \"[::1]:9469\", "
      "port 1..65535), \"unix:/absolute/path\" or \"off\"";
  auto refuse = [&](std::string_view why) {
    std::string m = "'" + std::string(text) + "' ";
    m += why;
    m += "; ";
    m += kAccepted;
    return InvalidArgumentError(std::move(m));
  };
  Config::Metrics m;
  m.listen = std::string(text);
  if (text.empty() || text == "off") {
    m.listen = "off";
    return m;
  }
  if (text.starts_with("unix:")) {
    std::string_view path = text.substr(5);
    if (path.empty() || path.front() != '/') {
      return refuse("is not accepted: the socket path must be absolute");
    }
    // sun_path holds 108 bytes with the terminating NUL.
    if (path.size() > 107) {
      return refuse(
          "is not accepted: the socket path is longer than 107 "
          "bytes");
    }
    m.kind = Config::Metrics::Kind::kUnix;
    m.socket_path = std::string(path);
    return m;
  }
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return refuse("is not accepted");
  }
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return refuse("is not accepted");
    host = host.substr(1, host.size() - 2);
    for (char c : host) {
      const bool ok =
          std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
      if (!ok) return refuse("has a bad IPv6 address");
    }
  } else {
    for (char c : host) {
      const bool ok =
          std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
      if (!ok) return refuse("has a bad host");
    }
  }
  uint32_t value = 0;
  bool valid = !port.empty() && port.size() <= 5;
  for (char c : port) {
    valid = valid && c >= '0' && c <= '9';
    if (valid) value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (!valid || value == 0 || value > 65535) {
    return refuse("has a bad port");
  }
  m.kind = Config::Metrics::Kind::kTcp;
  m.host = std::string(host);
  m.port = static_cast<uint16_t>(value);
  return m;
}

void Config::ResolveDefaults() {
  if (keystore.dir.empty()) keystore.dir = state_dir / "vault";
  if (keystore.master_key_file.empty()) {
    keystore.master_key_file = state_dir / "vault.key";
  }
  if (keystore.tpm2_sealed_file.empty()) {
    keystore.tpm2_sealed_file = state_dir / "vault.tpm2";
  }
}

namespace {

Result<Config> ParseConfigText(std::string_view toml_text,
                               std::string_view source_name) {
  toml::table table;
  try {
    table = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    const toml::source_region& where = e.source();
    return InvalidArgumentError(std::string(source_name) + ":" +
                                std::to_string(where.begin.line) + ":" +
                                std::to_string(where.begin.column) + ": " +
                                std::string(e.description()));
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string(source_name) + ": " + e.what());
  }
  Config config;
  std::vector<KeySpec> schema = Schema(config);
  CMKFS_RETURN_IF_ERROR(ApplyTable(table, source_name, "", schema));
  return config;
}

}  // namespace

Result<Config> ParseConfig(std::string_view toml_text,
                           std::string_view source_name) {
  Result<Config> config = ParseConfigText(toml_text, source_name);
  if (config.ok()) return config;
  return Status(config.status().kind(),
                EscapeControl(config.status().message()));
}

Result<Config> LoadConfigFile(const std::filesystem::path& path) {
  CMKFS_ASSIGN_OR_RETURN(
      std::filesystem::path trusted,
      CheckTrustedFile(path, "config file", FileSecrecy::kShared));
  FILE* f = std::fopen(trusted.c_str(), "rb");
  if (f == nullptr) {
    int err = errno;
    if (err == ENOENT) {
      return NotFoundError("config file " + path.string() + " not found");
    }
    if (err == EACCES) {
      return PermissionDeniedError("config file " + path.string() +
                                   ": permission denied");
    }
    return ErrnoError("open config file " + path.string(), err);
  }
  std::string text;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
  bool failed = std::ferror(f) != 0;
  int err = errno;
  std::fclose(f);
  if (failed) return ErrnoError("read config file " + path.string(), err);
  return ParseConfig(text, path.string());
}

}  // namespace cmkfs
