/// Snapshots and log compaction (Raft §7): the shell folds applied entries into a snapshot of its
/// state machine; a follower too far behind receives that snapshot in chunks instead of entries.
extension RaftNode {
    /// Replaces every entry up to `index` (already applied) with `data`, the state machine as of
    /// `index`. Returns the snapshot for the shell to persist, or nil when `index` is not applied
    /// or not past the current snapshot.
    public mutating func compact(through index: LogIndex, data: [UInt8]) -> Snapshot? {
        guard let s = snapshot(through: index, data: data) else { return nil }
        log.removeSubrange(...pos(index))
        snapshot = s
        return s
    }

    /// The snapshot `compact(through:data:)` would make, without compacting: lets the shell
    /// write it to disk elsewhere first and compact once that is done.
    public func snapshot(through index: LogIndex, data: [UInt8]) -> Snapshot? {
        guard index <= applied, index.value > offset, let t = term(at: index) else { return nil }
        var v = snapshot?.voters ?? initialVoters, l = snapshot?.learners ?? []
        for e in log[...pos(index)] where e.kind == .config { ConfigChange(decoding: e.data)?.apply(voters: &v, learners: &l) }
        return Snapshot(index: index, term: t, voters: v, learners: l, data: data)
    }

    mutating func sendSnapshot(to p: String) {
        guard case .leader(var progress) = role, let s = snapshot else { return }
        // An offset into an older snapshot (compacted again meanwhile) restarts the transfer.
        var offset = progress.snapshotOffset[p] ?? 0
        if offset > s.data.count { offset = 0 }
        let end = min(s.data.count, offset + settings.snapshotChunkBytes)
        var meta = s
        meta.data = Array(s.data[offset..<end])
        progress.snapshotOffset[p] = offset
        role = .leader(progress)
        send(p, .installSnapshot(term: term, meta: meta, offset: offset, done: end == s.data.count))
    }

    mutating func receiveSnapshotChunk(from leader: String, meta: Snapshot, offset: Int, done: Bool) {
        if meta.index <= commit {
            // Already have all of it (a duplicate or a stale resend).
            send(leader, .installSnapshotReply(term: term, index: meta.index, offset: 0, done: true))
            return
        }
        if offset == 0 { incoming = (meta, []) }
        guard var inc = incoming, inc.meta.index == meta.index, inc.meta.term == meta.term, inc.data.count == offset else {
            // Out of order: say where we are (0 restarts the transfer).
            let have = incoming.map { $0.meta.index == meta.index ? $0.data.count : 0 } ?? 0
            send(leader, .installSnapshotReply(term: term, index: meta.index, offset: have, done: false))
            return
        }
        guard inc.data.count + meta.data.count <= Snapshot.maxBytes else {
            incoming = nil
            rejected += 1
            return
        }
        inc.data += meta.data
        incoming = inc
        guard done else {
            send(leader, .installSnapshotReply(term: term, index: meta.index, offset: inc.data.count, done: false))
            return
        }
        var s = inc.meta
        s.data = inc.data
        incoming = nil
        guard snapshotCheck(s.data) else {
            rejected += 1
            return
        }
        // Keep entries after the snapshot if our log agrees with it there; otherwise drop them all.
        if term(at: s.index) == s.term, s.index <= lastIndex {
            log.removeSubrange(...pos(s.index))
        } else {
            log = []
        }
        snapshot = s
        applied = s.index
        if s.index > commit { hardState.commit = s.index; ready.hardState = hardState }
        recomputeConfig()
        ready.snapshot = s
        send(leader, .installSnapshotReply(term: term, index: s.index, offset: s.data.count, done: true))
    }

    mutating func snapshotReply(from p: String, index: LogIndex, offset: Int, done: Bool) {
        guard case .leader(var progress) = role else { return }
        progress.recentlyActive.insert(p)
        if done {
            progress.snapshotOffset[p] = nil
            if index > progress.match[p] ?? .zero { progress.match[p] = index }
            progress.next[p] = max(progress.next[p] ?? .zero, index + 1)
            role = .leader(progress)
            maybeCommit()
            sendAppend(to: p)
        } else {
            progress.snapshotOffset[p] = offset
            role = .leader(progress)
            if snapshot?.index == index { sendSnapshot(to: p) }
        }
    }
}
