import ChunkStore
import Coordinator
import Files
import ShardStore

/// What the data connection's server needs of the node's shards (`ShardStore` in production).
public protocol ShardBackend: Sendable {
    func create(_ ref: ShardRef) throws(FileError) -> any ShardSink
    func commit(_ ref: ShardRef) throws(FileError)
    func commit(_ ref: ShardRef, as version: ObjectVersion) throws(FileError)
    func abort(_ ref: ShardRef) throws(FileError)
    func revert(_ ref: ShardRef) throws(FileError)
    func held(bucket: String, key: String) throws(FileError) -> [Held]
    func read(_ ref: ShardRef) throws(FileError) -> any ShardSource
    func list(bucket: String, prefix: String, after: String, limit: Int, maxBytes: Int) -> (entries: [ListEntry], truncated: Bool)
}

public protocol ShardSink: AnyObject {
    func append(header: [UInt8], _ bytes: [UInt8]) throws(FileError)
    func finish(meta: [UInt8]) throws(FileError)
    func abort()
}

public protocol ShardSource: AnyObject {
    var meta: [UInt8] { get }
    var count: Int { get }
    func record(_ i: Int) throws(FileError) -> (header: [UInt8], bytes: [UInt8])
}

extension StripeFileWriter: ShardSink {}
extension StripeFileReader: ShardSource {}

extension ShardStore: ShardBackend {
    public func create(_ ref: ShardRef) throws(FileError) -> any ShardSink { try create(ref) as StripeFileWriter }
    public func read(_ ref: ShardRef) throws(FileError) -> any ShardSource { try open(ref) }
}

/// One data connection's server side, frames in and answers out, with the backend doing the
/// disk work (the shell runs it off the event loops). A shard put is `putShard`, its `stripe`s
/// and one `finish` with the metadata, answered once, at the end: prepared, or the first error (stripes after a
/// failure are read and dropped, so the connection stays in step). Anything out of place, or a
/// shard past `maxStripes`, ends the connection (`close`); a shard being written is aborted
/// then, as it is when the connection drops (`closed()`).
public final class ShardServer {
    public enum Answer {
        /// Nothing to send (a put's first frames).
        case none
        case frame(DataFrame)
        /// Several frames, in order.
        case frames([DataFrame])
        /// Stream `meta`, records `range` of `source` as `stripe` frames, then `end` (the shell
        /// reads one record at a time as the connection drains: backpressure).
        case stream(any ShardSource, Range<Int>)
        case close(reason: String)
    }

    /// Stripes one shard may have: 64 KiB blocks of a 5 TiB object (S3's largest), with room.
    public static let maxStripes = 1 << 27

    let backend: any ShardBackend
    var receiving: (sink: (any ShardSink)?, failure: DataError?, stripes: Int, ref: ShardRef?)?
    var isClosed = false

    public init(backend: any ShardBackend) { self.backend = backend }

    public func handle(_ frame: DataFrame) -> Answer {
        guard !isClosed else { return .close(reason: "closed") }
        if let r = receiving {
            switch frame {
            case .stripe(let header, let bytes):
                guard r.stripes < Self.maxStripes else { return fail("more than \(Self.maxStripes) stripes in one shard") }
                receiving!.stripes += 1
                if let sink = r.sink, r.failure == nil {
                    do { try sink.append(header: header, bytes) } catch {
                        sink.abort()
                        receiving!.sink = nil
                        receiving!.failure = Self.error(error)
                    }
                }
                return .none
            case .finish(let meta):
                receiving = nil
                if let f = r.failure { return .frame(.error(f)) }
                do { try r.sink!.finish(meta: meta) } catch {
                    r.sink!.abort()
                    return .frame(.error(Self.error(error)))
                }
                guard let ref = r.ref, let newest = try? backend.held(bucket: ref.bucket, key: ref.key).first?.version else { return .frame(.prepared) }
                return .frame(.preparedAfter(newest))
            default:
                return fail("\(Self.name(frame)) while a shard was being written")
            }
        }
        switch frame {
        case .putShard(let ref):
            do { receiving = (try backend.create(ref), nil, 0, ref) } catch { receiving = (nil, Self.error(error), 0, ref) }
            return .none
        case .commit(let ref): return run { () throws(FileError) in try backend.commit(ref) }
        case .commitAs(let ref, let version): return run { () throws(FileError) in try backend.commit(ref, as: version) }
        case .abort(let ref): return run { () throws(FileError) in try backend.abort(ref) }
        case .revert(let ref): return run { () throws(FileError) in try backend.revert(ref) }
        case .held(let bucket, let key), .heldHead(let bucket, let key, _):
            let hs: [Held]
            do { hs = Array(try backend.held(bucket: bucket, key: key).prefix(DataWire.maxVersions)) } catch { return .frame(.error(Self.error(error))) }
            guard case .heldHead(_, _, let maxBytes) = frame else { return .frame(.versions(hs)) }
            var out: [DataFrame] = [.versions(hs)]
            // What cannot be read here is left to the reader's usual path, which reports it.
            if let newest = hs.first, !newest.deleted, let source = try? backend.read(newest.ref(bucket, key)) {
                out.append(.meta(source.meta))
                if source.count == 1, newest.shard < newest.k, let record = try? source.record(0), record.bytes.count <= Int(maxBytes) {
                    out.append(.stripe(header: record.header, bytes: record.bytes))
                }
            }
            return .frames(out + [.end])
        case .list(let bucket, let prefix, let after, let limit):
            let (entries, truncated) = backend.list(
                bucket: bucket, prefix: prefix, after: after, limit: min(Int(limit), DataWire.maxListing), maxBytes: DataWire.listingBytes)
            return .frame(.listing(entries, truncated: truncated))
        case .getShard(let ref, let first, let count):
            let source: any ShardSource
            do { source = try backend.read(ref) } catch { return .frame(.error(Self.error(error))) }
            let lo = min(Int(first), source.count), hi = min(source.count, lo + Int(count))
            return .stream(source, lo..<hi)
        default:
            return fail("\(Self.name(frame)) is not a request")
        }
    }

    /// The connection dropped: a shard being written is abandoned.
    public func closed() {
        receiving?.sink?.abort()
        receiving = nil
        isClosed = true
    }

    func run(_ body: () throws(FileError) -> Void) -> Answer {
        do {
            try body()
            return .frame(.ok)
        } catch {
            return .frame(.error(Self.error(error)))
        }
    }

    func fail(_ reason: String) -> Answer {
        closed()
        return .close(reason: reason)
    }

    static func error(_ e: FileError) -> DataError {
        switch e {
        case .io(_, _, 2), .notFound: DataError(.notFound, "\(e)")  // ENOENT
        case .io(_, _, 17): DataError(.exists, "\(e)")  // EEXIST
        case .corrupt: DataError(.corrupt, "\(e)")
        case .io: DataError(.io, "\(e)")
        }
    }

    static func name(_ f: DataFrame) -> String { String(String(describing: f).prefix { $0 != "(" }) }
}

/// An answer goes from the thread pool back to its connection's task, which alone uses its source.
extension ShardServer.Answer: @unchecked Sendable {}
