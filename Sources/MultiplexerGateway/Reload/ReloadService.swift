import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// Reloads the node's configuration on SIGHUP and — with `serve --watch` — when its file changes
/// (ARCHITECTURE §4 Reload).
///
/// The watcher polls the file's identity (device, inode, size, modification time) every
/// ``pollInterval``: an in-place rewrite and a replace-by-rename both change it. A change is applied once
/// the file has been stable for one more poll (editors and `kubectl`'s ConfigMap updates write in several
/// steps), so a reload follows a change within about 1 s, always under 2 s.
struct ReloadService: Service {
    static let pollInterval: Duration = .milliseconds(400)
    let gateway: Gateway
    let watch: Bool

    func run() async throws {
        guard let source = self.gateway.source else {
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    for await _ in await UnixSignalsSequence(trapping: .sighup) {
                        self.gateway.logger.info("SIGHUP: reloading the configuration", metadata: ["file": .string(source.path)])
                        _ = self.gateway.reload()
                    }
                }
                if self.watch {
                    group.addTask { await self.watchFile(source.path) }
                }
            }
        }
    }

    /// The file's identity, `nil` while it cannot be read (mid-rename).
    static func identity(_ path: String) -> [Int64]? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return [Int64(st.st_dev), Int64(st.st_ino), Int64(st.st_size), Int64(st.st_mtim.tv_sec), Int64(st.st_mtim.tv_nsec)]
    }

    private func watchFile(_ path: String) async {
        var applied = Self.identity(path)
        var pending: [Int64]?
        while !Task.isCancelled {
            do { try await Task.sleep(for: Self.pollInterval) } catch { return }
            let now = Self.identity(path)
            guard let now, now != applied else {
                pending = nil
                continue
            }
            if pending == now {
                // Unchanged for one poll: the write is complete.
                applied = now
                pending = nil
                self.gateway.logger.info("configuration file changed: reloading", metadata: ["file": .string(path)])
                _ = self.gateway.reload()
            } else {
                pending = now
            }
        }
    }
}

/// Keeps the run-time client keys in step with Redis (see ``RuntimeKeySync``).
struct RuntimeKeySyncService: Service {
    let gateway: Gateway
    func run() async throws {
        guard self.gateway.redisStore != nil else {
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            await RuntimeKeySync(gateway: self.gateway).run()
        }
    }
}
