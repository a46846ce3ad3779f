/// Membership: the configuration in force is the initial one plus every config entry in the log.
extension RaftNode {
    /// Proposes one membership change; nil unless leader, its term has committed an entry, and
    /// no other change is still uncommitted (the single-server rule and Ongaro's 2015 fix).
    public mutating func proposeConfigChange(_ change: ConfigChange) -> (index: LogIndex, ready: Ready)? {
        guard case .leader = role, transferTarget == nil, term(at: commit) == term,
            !log[(pos(commit) + 1)...].contains(where: { $0.kind == .config })
        else { return nil }
        let e = Entry(term: term, index: lastIndex + 1, kind: .config, data: change.encoded)
        appendLocal([e])
        for p in peers { sendAppend(to: p) }
        maybeCommit()
        return (e.index, takeReady())
    }

    /// The configuration is the initial one plus every config entry now in the log, so a
    /// truncated change is undone as well.
    mutating func recomputeConfig() {
        var v = snapshot?.voters ?? initialVoters, l = snapshot?.learners ?? []
        for e in log where e.kind == .config { ConfigChange(decoding: e.data)?.apply(voters: &v, learners: &l) }
        voters = v
        learners = l
        guard case .leader(var progress) = role else { return }
        let current = Set(peers)
        for p in current where progress.next[p] == nil { progress.next[p] = lastIndex + 1; progress.match[p] = .zero; progress.probing.insert(p) }
        for p in Array(progress.next.keys) where !current.contains(p) { progress.next[p] = nil; progress.match[p] = nil }
        role = .leader(progress)
    }
}
