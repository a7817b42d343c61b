#include "net/remote_factory.h"

#include <stdexcept>

#include "net/auth.h"

namespace emp::net {

tier::Pool::RemoteFactory make_remote_factory(const Options& options, const RemoteConfig& base) {
  RemoteConfig config = base;
  if (options.transport != "auto") config.provider = parse_provider(options.transport);
  if (!options.auth_key.empty()) {
    config.key = options.auth_key;
  } else if (!options.auth_key_file.empty()) {
    config.key = read_key_file(options.auth_key_file);
  }
  const bool mirrored = options.replicas > 1;
  return [config, mirrored](const TierSpec& spec) -> std::unique_ptr<tier::Tier> {
    if (spec.kind != TierSpec::Kind::kRemote)
      throw std::invalid_argument("memory path element '" + spec.element + "' is not a remote donor");
    auto tier = RemoteTier::connect(spec, config);
    tier->set_fail_fast(mirrored);  // a mirror reads another copy instead of waiting
    return tier;
  };
}

}  // namespace emp::net
