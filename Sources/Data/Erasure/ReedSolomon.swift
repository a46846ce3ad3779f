import Foundation

/// Errors of the erasure-coding layer.
public enum ErasureError: Error, CustomStringConvertible, Equatable {
    case badGeometry(dataShards: Int, parityShards: Int)
    case shardCount(expected: Int, got: Int)
    case shardLength(expected: Int, got: Int)
    case tooFewShards(needed: Int, have: Int)

    public var description: String {
        switch self {
        case .badGeometry(let k, let m): "invalid erasure geometry \(k)+\(m): need 1 ≤ k, 0 ≤ m, k+m ≤ 255"
        case .shardCount(let e, let g): "expected \(e) shards, got \(g)"
        case .shardLength(let e, let g): "shards must all be \(e) bytes, got one of \(g)"
        case .tooFewShards(let n, let h): "cannot rebuild: need \(n) shards, only \(h) survive"
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
        var padded = block
        padded.append(contentsOf: repeatElement(0, count: length * dataShards - block.count))
        let parity = ISAL.apply(tables: encodeTables, k: dataShards, rows: parityShards, inputs: padded, length: length)
        return (0..<dataShards).map { Array(padded[($0 * length)..<(($0 + 1) * length)]) }
            + (0..<parityShards).map { Array(parity[($0 * length)..<(($0 + 1) * length)]) }
    }

    /// Rebuilds the original block of `size` bytes from k+m slots, nil where a shard is lost.
    public func decode(shards: [[UInt8]?], size: Int) throws(ErasureError) -> [UInt8] {
        let total = dataShards + parityShards
        guard shards.count == total else { throw .shardCount(expected: total, got: shards.count) }
        let length = shardLength(forBlockOf: size)
        let present = shards.indices.filter { shards[$0] != nil }
        for i in present where shards[i]!.count != length { throw .shardLength(expected: length, got: shards[i]!.count) }
        guard present.count >= dataShards else { throw .tooFewShards(needed: dataShards, have: present.count) }

        if (0..<dataShards).allSatisfy({ shards[$0] != nil }) {
            return Array((0..<dataShards).flatMap { shards[$0]! }.prefix(size))
        }
        // Take k survivors, invert their rows of the encoding matrix, and multiply to get the data back.
        let chosen = Array(present.prefix(dataShards))
        var sub = [UInt8](); sub.reserveCapacity(dataShards * dataShards)
        for row in chosen { sub.append(contentsOf: matrix[(row * dataShards)..<((row + 1) * dataShards)]) }
        guard let inverse = ISAL.invert(sub, k: dataShards) else {
            preconditionFailure("Cauchy submatrix is always invertible")
        }
        let tables = ISAL.tables(k: dataShards, rows: dataShards, matrix: inverse)
        let data = ISAL.apply(
            tables: tables, k: dataShards, rows: dataShards,
            inputs: chosen.flatMap { shards[$0]! }, length: length)
        return Array(data.prefix(size))
    }
}
