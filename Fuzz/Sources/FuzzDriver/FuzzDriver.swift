import CLibFuzzer

#if canImport(Glibc)
import Glibc
#endif

/// Runs libFuzzer over `body` with the process's command-line flags (`-max_total_time=30 corpus/` …), and
/// exits with libFuzzer's status. `body` gets one input and must crash (a trap, a sanitizer report) on a
/// bug: returning means the input was handled.
public func fuzz(_ body: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, body))
}

/// The input as an array (libFuzzer passes a null pointer for the empty input).
public func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// A failed property of a fuzzed input: traps, so libFuzzer saves the input as a crash.
public func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("property failed: \(message())") }
}
