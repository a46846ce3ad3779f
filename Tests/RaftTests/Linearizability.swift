/// A Porcupine-style linearizability checker (Wing & Gong's search with memoization) for a
/// register per key: is there an order of the operations, consistent with real time, in which
/// every read returns the latest write? Operations that never completed may take effect at any
/// point after they began, or never.
struct RegisterHistory {
    enum Kind: Equatable { case write(UInt32), read(UInt32?) }
    struct Operation {
        var kind: Kind
        var invoke: Int
        /// nil: no answer reached the client (may or may not have happened).
        var response: Int?
    }

    var operations: [Operation] = []

    /// true when linearizable; operations beyond 62 per key are not supported (bitmask search).
    func isLinearizable() -> Bool {
        let ops = operations
        precondition(ops.count <= 62, "history too long for the bitmask search")
        let completed = ops.indices.filter { ops[$0].response != nil }
        let mustDo = completed.reduce(UInt64(0)) { $0 | (1 << UInt64($1)) }
        var seen = Set<State>()

        struct State: Hashable { var done: UInt64; var value: UInt32? }

        func search(_ s: State) -> Bool {
            if s.done & mustDo == mustDo { return true }
            if !seen.insert(s).inserted { return false }
            // Earliest response among operations not yet placed: nothing invoked after it can go first.
            var horizon = Int.max
            for i in ops.indices where s.done & (1 << UInt64(i)) == 0 {
                if let r = ops[i].response { horizon = min(horizon, r) }
            }
            for i in ops.indices where s.done & (1 << UInt64(i)) == 0 && ops[i].invoke <= horizon {
                let next = s.done | (1 << UInt64(i))
                switch ops[i].kind {
                case .write(let v):
                    if search(State(done: next, value: v)) { return true }
                case .read(let v):
                    if v == s.value && search(State(done: next, value: s.value)) { return true }
                }
            }
            return false
        }
        return search(State(done: 0, value: nil))
    }
}
