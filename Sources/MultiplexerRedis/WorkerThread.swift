internal import CHiredis

#if canImport(Glibc)
import Glibc
#endif

/// Starts a named OS thread (not from the Swift cooperative pool, not a NIO event loop) for blocking
/// C calls. The thread is detached: it ends when its body returns.
final class WorkerThread: Sendable {
    private final class Box {
        let body: () -> Void
        let name: String
        init(_ name: String, _ body: @escaping () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// The thread id; written once before `init` returns.
    private nonisolated(unsafe) var thread = pthread_t()

    init(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(String(name.prefix(15)), body)).toOpaque()
        let rc = pthread_create(&self.thread, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.name.withCString { chiredis_name_current_thread($0) }
            box.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        pthread_detach(self.thread)
    }

}
