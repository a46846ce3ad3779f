import Determinism

/// An append-only file on a simulated disk with a page cache: appends reach the disk only when
/// synced. A crash keeps what was synced plus any prefix of the rest, cut at any byte (a torn
/// write), and may flip a bit in that torn part (a sector half written); `rot` flips a bit
/// anywhere on the disk (media corruption, which checksums have to catch).
public struct SimFile: Sendable {
    /// What is on the disk.
    public private(set) var durable: [UInt8] = []
    /// Appended since the last sync (in the page cache only).
    public private(set) var cached: [UInt8] = []
    /// Chance (0...1) that a crash flips one bit in the torn tail it leaves.
    public var tornBitFlipRate = 0.0

    public init(durable: [UInt8] = []) { self.durable = durable }

    /// What a reader sees before any crash.
    public var contents: [UInt8] { durable + cached }

    public mutating func append(_ bytes: [UInt8]) { cached += bytes }

    public mutating func sync() {
        durable += cached
        cached = []
    }

    /// The machine loses power: returns how many unsynced bytes survived (0...cached.count).
    @discardableResult
    public mutating func crash(rng: inout SeededRandom) -> Int {
        let kept = rng.below(cached.count + 1)
        var tail = Array(cached.prefix(kept))
        if !tail.isEmpty, tornBitFlipRate > 0, rng.chance(tornBitFlipRate) {
            tail[rng.below(tail.count)] ^= UInt8(1) << UInt8(rng.below(8))
        }
        durable += tail
        cached = []
        return kept
    }

    /// Flips one bit somewhere on the disk; returns its byte offset (nil: the file is empty).
    @discardableResult
    public mutating func rot(rng: inout SeededRandom) -> Int? {
        guard !durable.isEmpty else { return nil }
        let at = rng.below(durable.count)
        durable[at] ^= UInt8(1) << UInt8(rng.below(8))
        return at
    }
}
