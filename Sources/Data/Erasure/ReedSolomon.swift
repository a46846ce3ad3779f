import Foundation

/// Errors of the erasure-coding layer.
public enum ErasureError: Error, CustomStringConvertible, Equatable {
    case badGeometry(dataShards: Int, parityShards: Int)
    case shardCount(expected: Int, got: Int)
    case shardLength(expected: Int, got: Int)
    case tooFewShards(needed: Int, have: Int)
    case badStripe(String)

    public var description: String {
        switch self {
        case .badGeometry(let k, let m): "invalid erasure geometry \(k)+\(m): need 1 ≤ k, 0 ≤ m, k+m ≤ 255"
        case .shardCount(let e, let g): "expected \(e) shards, got \(g)"
        case .shardLength(let e, let g): "shards must all be \(e) bytes, got one of \(g)"
        case .tooFewShards(let n, let h): "cannot rebuild: need \(n) shards, only \(h) survive"
        case .badStripe(let why): "bad stripe: \(why)"
        }
    }
}

/// Systematic Reed-Solomon code k+m: data shards are the data itself, m parity shards let any
/// k survivors rebuild everything.
public struct ReedSolomon: Sendable {
    public let dataShards: Int
    public let parityShards: Int
    private let matrix: [UInt8]
    private let encodeTables: [UInt8]

    public init(dataShards k: Int, parityShards m: Int) throws(ErasureError) {
        guard k >= 1, m >= 0, k + m <= 255 else { throw .badGeometry(dataShards: k, parityShards: m) }
        dataShards = k
        parityShards = m
        matrix = ISAL.cauchyMatrix(k: k, m: m)
        encodeTables = ISAL.tables(k: k, rows: m, matrix: Array(matrix[(k * k)...]))
    }

    /// Shard length for a block of `size` bytes: ceil(size / k).
    public func shardLength(forBlockOf size: Int) -> Int { (size + dataShards - 1) / dataShards }

    /// Splits a block into k zero-padded data shards and appends m parity shards.
    public func encode(block: [UInt8]) -> [[UInt8]] {
        let length = shardLength(forBlockOf: block.count)
        var stripe = block
        stripe.append(contentsOf: repeatElement(0, count: length * (dataShards + parityShards) - block.count))
        stripe.withUnsafeMutableBufferPointer { encodeParity(stripe: $0, length: length) }
        return (0..<(dataShards + parityShards)).map { Array(stripe[($0 * length)..<(($0 + 1) * length)]) }
    }

    /// Computes the m parity shards in place: `stripe` holds the k data shards of `length` bytes
    /// back to back, then room for the m parity shards (so (k+m)·length bytes in all).
    public func encodeParity(stripe: UnsafeMutableBufferPointer<UInt8>, length: Int) {
        precondition(stripe.count >= (dataShards + parityShards) * length, "stripe must hold k+m shards")
        guard length > 0 else { return }
        let base = stripe.baseAddress!
        ISAL.apply(
            tables: encodeTables, inputs: (0..<dataShards).map { base + $0 * length },
            outputs: (0..<parityShards).map { base + (dataShards + $0) * length }, length: length)
    }

    /// Rebuilds the original block of `size` bytes from k+m slots, nil where a shard is lost.
    /// The data shards present are copied into place; only the lost ones are computed, from the
    /// first k shards present (so with every data shard present nothing is decoded).
    public func decode(shards: [[UInt8]?], size: Int) throws(ErasureError) -> [UInt8] {
        let k = dataShards, total = dataShards + parityShards
        guard shards.count == total else { throw .shardCount(expected: total, got: shards.count) }
        let length = shardLength(forBlockOf: size)
        let present = shards.indices.filter { shards[$0] != nil }
        for i in present where shards[i]!.count != length { throw .shardLength(expected: length, got: shards[i]!.count) }
        guard present.count >= k else { throw .tooFewShards(needed: k, have: present.count) }
        guard length > 0 else { return [] }

        var out = [UInt8](repeating: 0, count: k * length)
        let lost = (0..<k).filter { shards[$0] == nil }
        out.withUnsafeMutableBufferPointer { o in
            for i in 0..<k { if let s = shards[i] { s.withUnsafeBufferPointer { (o.baseAddress! + i * length).update(from: $0.baseAddress!, count: length) } } }
        }
        if !lost.isEmpty {
            // Invert the chosen k rows of the encoding matrix; the lost rows of the inverse, applied
            // to the chosen shards, give the lost data shards.
            let chosen = Array(present.prefix(k))
            var sub = [UInt8]()
            sub.reserveCapacity(k * k)
            for row in chosen { sub.append(contentsOf: matrix[(row * k)..<((row + 1) * k)]) }
            guard let inverse = ISAL.invert(sub, k: k) else { preconditionFailure("Cauchy submatrix is always invertible") }
            var rows = [UInt8]()
            for d in lost { rows.append(contentsOf: inverse[(d * k)..<((d + 1) * k)]) }
            let tables = ISAL.tables(k: k, rows: lost.count, matrix: rows)
            // The parity shards used, side by side (the data shards are read from `out`).
            let parity = chosen.filter { $0 >= k }
            var scratch = [UInt8](repeating: 0, count: parity.count * length)
            scratch.withUnsafeMutableBufferPointer { p in
                for (j, row) in parity.enumerated() {
                    shards[row]!.withUnsafeBufferPointer { (p.baseAddress! + j * length).update(from: $0.baseAddress!, count: length) }
                }
                out.withUnsafeMutableBufferPointer { o in
                    let inputs = chosen.map { row in row < k ? o.baseAddress! + row * length : p.baseAddress! + parity.firstIndex(of: row)! * length }
                    ISAL.apply(tables: tables, inputs: inputs, outputs: lost.map { o.baseAddress! + $0 * length }, length: length)
                }
            }
        }
        out.removeLast(out.count - size)
        return out
    }
}
