import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A named OS thread — not one of the Swift cooperative pool's, not a NIO event loop — for work that blocks
/// in C or must never wait for the pool: the Redis client's I/O worker (hiredis), the upstream client's
/// libcurl loop, the log writer. The one way the project starts a thread.
///
/// **Lifetime.** The thread starts in `init` and runs `body` once; it ends when `body` returns. Its owner
/// decides how `body` ends (a stop flag and a wake-up, a loop command, a released owner) and may then
/// ``join()`` it: wait until `body` has returned. An owner that cannot wait (a `shutdown()` called from async
/// code while the body may still be inside a bounded C call) lets it end on its own: the thread is detached
/// when this object is released without a join, and its resources are freed when it ends. Whatever `body`
/// captures stays alive until then.
///
/// **Name.** Up to 15 bytes (the kernel's limit), shown by `top -H`, `perf` and `/proc/<pid>/task/*/comm`.
package final class DedicatedThread: Sendable {
    private struct State {
        var joined = false
    }

    private final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    #if canImport(Glibc)
    private let thread: pthread_t
    #else
    // Safety: an opaque handle, only passed to the thread-safe pthread functions.
    private nonisolated(unsafe) let thread: pthread_t
    #endif
    private let state = Mutex(State())

    /// Starts the thread.
    ///
    /// - Parameters:
    ///   - name: the thread's name (truncated to 15 bytes).
    ///   - body: what the thread runs; the thread ends when it returns.
    package init(name: String, _ body: @escaping @Sendable () -> Void) {
        let start = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        #if canImport(Glibc)
        var thread = pthread_t()
        #else
        var thread: pthread_t?
        #endif
        let result = pthread_create(
            &thread, nil,
            { argument in
                let start = Unmanaged<Start>.fromOpaque(argument!).takeRetainedValue()
                DedicatedThread.nameCurrentThread(start.name)
                start.body()
                return nil
            }, start)
        guard result == 0 else {
            Unmanaged<Start>.fromOpaque(start).release()
            fatalError("cannot start thread \(name): pthread_create returned \(result)")
        }
        #if canImport(Glibc)
        self.thread = thread
        #else
        self.thread = thread!
        #endif
    }

    /// Waits until the thread's body has returned. Returns at once when called again, or from the thread
    /// itself (which cannot wait for its own end).
    package func join() {
        let wait = self.state.withLock { s -> Bool in
            defer { s.joined = true }
            return !s.joined
        }
        guard wait else { return }
        if pthread_equal(pthread_self(), self.thread) != 0 {
            pthread_detach(self.thread)
            return
        }
        pthread_join(self.thread, nil)
    }

    deinit {
        if !self.state.withLock({ $0.joined }) { pthread_detach(self.thread) }
    }

    private static func nameCurrentThread(_ name: String) {
        let bytes = Array(name.utf8.prefix(15))
        #if os(Linux)
        // pthread_setname_np is a GNU extension Glibc's module does not export: the kernel's file for it.
        let fd = open("/proc/thread-self/comm", O_WRONLY)
        guard fd >= 0 else { return }
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #elseif canImport(Darwin)
        _ = String(decoding: bytes, as: UTF8.self).withCString { pthread_setname_np($0) }
        #endif
    }
}
