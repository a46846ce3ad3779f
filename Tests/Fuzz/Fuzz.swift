import Checksum
// libFuzzer entry for every decoder that reads the network or the disk. One binary; the target
// is chosen by STACKS_FUZZ_TARGET (tools/fuzz sets it). Built only by tools/fuzz, with
// `-sanitize=fuzzer,address` on the project's own modules (STACKS_FUZZ=1 in Package.swift).
// A decoder may refuse an input however it likes; trapping, hanging or overflowing is the bug.
import ChunkStore
import Cluster
import Coordinator
import DataPlane
import Erasure
import Files
import Foundation
import Gossip
import RaftLog
import Support

@testable import Objects
@testable import S3

struct NoKeys: CredentialStore { func secret(forAccessKey id: String) -> String? { id == "AK" ? "secret" : nil } }

let targets: [String: @Sendable ([UInt8]) -> Void] = [
    "http-date": { b in
        let s = String(decoding: b, as: UTF8.self)
        _ = HTTPDate.parse(s)
        _ = SigV4.epochSeconds(s)
    },
    "range": { b in
        guard b.count >= 8 else { return }
        let size = Int(b[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } >> 2)  // up to 2^62
        _ = ByteRange.parse(String(decoding: b[8...], as: UTF8.self), size: size)
    },
    "sigv4": { b in
        // Lines: method, raw path, then "name: value" headers, then "?" query lines "name=value".
        let lines = String(decoding: b, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var headers: [String: String] = [:], query: [(String, String)] = []
        for l in lines.dropFirst(2) {
            if l.hasPrefix("?") {
                let kv = l.dropFirst().split(separator: "=", maxSplits: 1).map(String.init)
                query.append((kv.first ?? "", kv.count > 1 ? kv[1] : ""))
            } else if let c = l.firstIndex(of: ":") {
                headers[l[..<c].lowercased()] = String(l[l.index(after: c)...]).trimmingCharacters(in: .whitespaces)
            }
        }
        let r = SignedRequest(method: lines.first ?? "GET", rawPath: lines.count > 1 ? lines[1] : "/", query: query, headers: headers)
        _ = try? SigV4(credentials: NoKeys(), region: "us-east-1", nowMs: 1_764_633_600_000).verify(r)
    },
    "aws-chunked": { b in
        guard let mode = b.first else { return }
        var d = AWSChunkedDecoder(signer: nil, withTrailers: mode & 1 == 1)
        var i = 1
        while i < b.count {  // arbitrary pieces, as the network cuts them
            let n = min(b.count - i, Int(b[i]) + 1)
            guard (try? d.feed(b[i..<(i + n)])) != nil else { return }
            i += n
        }
    },
    "xml": { b in _ = XMLNode.parse(b) },
    "gossip-wire": { b in _ = try? WireFormat.decode(b) },
    "raft-frame": { b in _ = try? RaftWire.decode(b) },
    "data-frame": { b in _ = try? DataWire.decode(b) },
    "version-meta": { b in _ = try? VersionMeta(decoding: b) },
    "cluster-state": { b in
        _ = try? ClusterState(decoding: b)
        _ = try? Request(decoding: b)
    },
    "records": { b in
        _ = try? ObjectInfo(decoding: b)
        _ = try? UploadInfo(decoding: b)
        _ = try? UploadedPart(decoding: b)
        _ = try? BucketInfo(decoding: b)
    },
    "raft-log": { b in
        // A log directory holding one segment of these bytes (and a snapshot when the first byte says so).
        let dir = (Files.exists("/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory()) + "stacks-fuzz-raftlog-\(getpid())"
        try? Files.makeDirectory(dir)
        defer { for n in (try? Files.list(dir)) ?? [] { try? Files.remove("\(dir)/\(n)") } }
        guard let mode = b.first else { return }
        let body = Array(b.dropFirst())
        if mode & 1 == 1 {
            let cut = min(body.count, Int(mode >> 1) * 64)
            try? Files.writeAtomically(Array(body[..<cut]), to: "\(dir)/snapshot")
            try? Files.writeAtomically(Array(body[cut...]), to: "\(dir)/wal-0000000000000000.log")
        } else {
            try? Files.writeAtomically(body, to: "\(dir)/wal-0000000000000000.log")
        }
        _ = try? RaftLog(directory: dir, segmentBytes: 1 << 16)
    },
    "shard-file": { b in
        let path = (Files.exists("/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory()) + "stacks-fuzz-shard-\(getpid())"
        guard (try? Files.writeAtomically(b, to: path)) != nil else { return }
        defer { try? Files.remove(path) }
        guard let r = try? ShardReader(path: path), r.rawSize <= 1 << 24 else { return }
        try? r.forEachSlice(of: 0..<r.rawSize) { _ in }
    },
    "stripe-file": { b in
        let path = (Files.exists("/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory()) + "stacks-fuzz-stripe-\(getpid())"
        guard (try? Files.writeAtomically(b, to: path)) != nil else { return }
        defer { try? Files.remove(path) }
        guard let r = try? StripeFileReader(path: path) else { return }
        for i in 0..<r.count { _ = try? r.record(i) }
    },
    "stripe": { b in
        // A scheme byte, a stripe header, then k+m shards as a node read them (a length byte each).
        guard b.count > StripeHeader.encodedSize + 1 else { return }
        var r = BinaryReader(Array(b[1...(StripeHeader.encodedSize)]))
        guard let header = try? StripeHeader(reading: &r) else { return }
        let schemes = [(1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (4, 2), (8, 4)]
        let (k, m) = schemes[Int(b[0]) % schemes.count]
        guard let code = try? ReedSolomon(dataShards: k, parityShards: m) else { return }
        var rest = Array(b[(StripeHeader.encodedSize + 1)...])[...]
        var shards: [[UInt8]?] = []
        for i in 0..<(k + m) {
            guard let n = rest.first else { shards.append(nil); continue }
            rest = rest.dropFirst()
            let take = min(rest.count, Int(n))
            shards.append(i % 3 == 2 ? nil : Array(rest.prefix(take)))
            rest = rest.dropFirst(take)
        }
        let sums = shards.map { $0.map { Checksum.crc32c($0) } }
        _ = try? StripeDecoder(code: code).decode(header, shards: shards, checksums: sums)
    },
]

let chosen: @Sendable ([UInt8]) -> Void = {
    let name = ProcessInfo.processInfo.environment["STACKS_FUZZ_TARGET"] ?? ""
    guard let t = targets[name] else {
        FileHandle.standardError.write(Data("STACKS_FUZZ_TARGET must be one of: \(targets.keys.sorted().joined(separator: " "))\n".utf8))
        exit(2)
    }
    return t
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    chosen(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

// SwiftPM links an executable's entry as `<module>_main`; hand control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("StacksFuzz_main")
public func stacksFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc, v = argv
    return LLVMFuzzerRunDriver(&c, &v) { data, size in fuzz(data, size) }
}
