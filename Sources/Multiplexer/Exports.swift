// The core value types that appear in the library's API, re-exported one by one so that `import Multiplexer`
// is enough to name them — without bringing the rest of MultiplexerCore (its `Router`, `Provider`, …) into a
// service's namespace, where they could clash with the service's own types.
@_exported public import enum MultiplexerCore.JSONValue
@_exported public import struct MultiplexerCore.SeedStats
@_exported public import struct MultiplexerCore.FleetStats
@_exported public import struct MultiplexerCore.ProviderStats
@_exported public import struct MultiplexerCore.UsageCounters
@_exported public import struct MultiplexerCore.WindowUse
@_exported public import struct MultiplexerCore.NodeInfo
@_exported public import enum MultiplexerCore.CooldownReason
@_exported public import struct MultiplexerCore.ProviderLimits
@_exported public import struct MultiplexerCore.Pricing
@_exported public import struct MultiplexerCore.KeyStats
