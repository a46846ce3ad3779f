import Testing

@testable import Gossip

/// What a peer holding the gossip key (or bit rot on the wire) can send must never trap a
/// member, and a member's own comings and goings must not leave it misreported.
@Suite struct HostilePeerTests {
    @Test func incarnationsPastTheLimitAreRefusedByTheDecoder() throws {
        for inc in [Incarnation.limit.value + 1, UInt64.max] {
            let p = Packet(from: "a", fromAddress: "x:1", message: .gossip, rumors: [.suspect(name: "b", incarnation: Incarnation(inc), from: "a")])
            #expect(throws: WireFormat.DecodeError.self) { try WireFormat.decode(WireFormat.encode(p)) }
            let s = Packet(
                from: "a", fromAddress: "x:1",
                message: .pushPull(
                    states: [
                        MemberState(name: "b", address: "x:2", status: .alive, incarnation: Incarnation(inc), tags: [:])
                    ], isReply: true, isJoin: false), rumors: [])
            #expect(throws: WireFormat.DecodeError.self) { try WireFormat.decode(WireFormat.encode(s)) }
        }
        let atLimit = Packet(from: "a", fromAddress: "x:1", message: .gossip, rumors: [.dead(name: "b", incarnation: .limit, from: "a")])
        #expect(try WireFormat.decode(WireFormat.encode(atLimit)) == atLimit)
    }

    /// An accusation at the highest incarnation (from a core fed without the decoder's bound,
    /// e.g. a future transport) is refuted without an overflow trap.
    @Test(arguments: [Incarnation.limit, Incarnation(UInt64.max - 1), Incarnation(UInt64.max)])
    func accusationAtTheTopIsRefutedWithoutTrapping(inc: Incarnation) {
        var a = SWIM(name: "a", address: "x:1", seed: 1, now: Instant(nanoseconds: 0))
        for r in [Rumor.suspect(name: "a", incarnation: inc, from: "m"), .dead(name: "a", incarnation: inc, from: "m"), .left(name: "a", incarnation: inc)] {
            _ = a.receive(Packet(from: "m", fromAddress: "x:9", message: .gossip, rumors: [r]), now: Instant(nanoseconds: 1))
            #expect(a.incarnation >= inc)
        }
    }

    /// A voter stopped gracefully (it said "left") and started again under the same name must
    /// be alive in every view again: its fresh alive rumor at incarnation 0 is older than the
    /// "left" its peers hold, so it has to refute that "left" when it hears it.
    @Test(arguments: [5, 6, 7] as [UInt64])
    func restartAfterAGracefulLeaveIsAliveEverywhere(seed: UInt64) {
        var sim = SimulationTests.cluster(8, seed: seed)
        #expect(SimulationTests.converge(&sim, within: .seconds(10)) != nil)
        sim.leave(6)
        sim.run(until: sim.now + .seconds(2))
        sim.crash(6)
        for i in 0..<8 where i != 6 { #expect(sim.nodes[i].swim.member("n6")?.status == .left, "seed \(seed): n\(i) missed n6's leave") }
        sim.nodes[6] = Simulator.Node(swim: SWIM(name: "n6", address: Simulator.address(6), seed: 99, now: sim.now))
        sim.join(6, seeds: [0])
        #expect(SimulationTests.converge(&sim, within: .seconds(10)) != nil, "seed \(seed): restarted n6 is not alive in every view")
    }

    /// Tags near the cap on several members: every packet stays within one UDP datagram (the
    /// simulator drops larger ones, as the kernel would), and every member sees every tag.
    @Test func largeTagsOnManyMembersFitInDatagramsAndReachEveryone() {
        var sim = Simulator(seed: 8)
        sim.maxDatagramBytes = 65_507
        var rng = SeededRandom(seed: 8)
        func text(_ n: Int) -> String { String((0..<n).map { _ in Character(Unicode.Scalar(UInt8(33 + rng.next() % 94))) }) }
        var tags: [[String: String]] = []
        for i in 0..<6 {
            var t: [String: String] = [:]
            while t.count < 60 { t["k\(t.count)-" + text(200)] = text(255) }
            tags.append(t)
            sim.addNode(tags: t)
            if i > 0 { sim.join(i, seeds: [0]) }
        }
        sim.run(until: sim.now + .seconds(20))
        #expect(sim.oversized == 0, "seed 8: \(sim.oversized) packets were larger than a datagram")
        for i in 0..<6 {
            for j in 0..<6 where j != i {
                #expect(sim.nodes[i].swim.member("n\(j)")?.tags == tags[j], "seed 8: n\(i) lacks n\(j)'s tags")
            }
        }
    }

    /// A key holder that invents members or floods ping requests meets the named bounds: the
    /// table stops growing, refusals are counted, and members already listed still update.
    @Test func inventedMembersAndPingRequestFloodsStopAtTheBounds() {
        var settings = SWIMSettings()
        settings.maxMembers = 50
        settings.maxRelays = 8
        var a = SWIM(name: "a", address: "x:1", settings: settings, seed: 3, now: Instant(nanoseconds: 0))
        let t = Instant(nanoseconds: 1)
        for batch in 0..<10 {
            let rumors = (0..<10).map { Rumor.alive(name: "m\(batch * 10 + $0)", address: "x:9", incarnation: Incarnation(1), tags: [:]) }
            _ = a.receive(Packet(from: "z", fromAddress: "x:9", message: .gossip, rumors: rumors), now: t)
        }
        #expect(a.members.count == 51)  // and a itself
        #expect(a.refusedAtBounds == 50)
        _ = a.receive(
            Packet(
                from: "z", fromAddress: "x:9", message: .gossip, rumors: [.alive(name: "m0", address: "x:8", incarnation: Incarnation(2), tags: ["k": "v"])]),
            now: t)
        #expect(a.member("m0")?.tags == ["k": "v"], "a listed member no longer updates at the bound")

        var sent = 0
        for s in 0..<100 as Range<UInt32> {
            let effects = a.receive(Packet(from: "z", fromAddress: "x:9", message: .pingRequest(seq: s, target: "q", targetAddress: "x:7"), rumors: []), now: t)
            sent += effects.filter { if case .send(let p, _) = $0, case .ping = p.message { true } else { false } }.count
        }
        #expect(sent == 8, "relayed \(sent) pings; the bound is 8")
        #expect(a.refusedAtBounds == 50 + 92)
    }

    /// Confirmations shorten a suspicion and are re-gossiped; only listed members count, so a
    /// flood of accusers under invented names neither grows the suspicion nor keeps re-spreading.
    @Test func confirmationsFromUnknownAccusersAreNotKeptOrSpread() {
        var a = SWIM(name: "a", address: "x:1", seed: 4, now: Instant(nanoseconds: 0))
        let t = Instant(nanoseconds: 1)
        let members = (0..<8).map { Rumor.alive(name: "m\($0)", address: "x:\($0 + 10)", incarnation: Incarnation(1), tags: [:]) }
        _ = a.receive(Packet(from: "m0", fromAddress: "x:10", message: .gossip, rumors: members), now: t)
        var spread: [String] = []
        for accuser in ["m2"] + (0..<200).map({ "invented-\($0)" }) + ["m3", "m4"] {
            let r = Rumor.suspect(name: "m1", incarnation: Incarnation(1), from: accuser)
            _ = a.receive(Packet(from: "m0", fromAddress: "x:10", message: .gossip, rumors: [r]), now: t)
            if case .suspect(_, _, let f)? = a.rumors["m1"]?.rumor, f == accuser, a.rumors["m1"]?.transmits == 0 { spread.append(f) }
            a.rumors["m1"]?.transmits = 1  // as if sent, so a re-enqueue shows
        }
        #expect(a.entries["m1"]?.suspicion?.confirmations == ["m3", "m4"])
        #expect(spread == ["m2", "m3", "m4"], "re-gossiped \(spread.count) accusations")
    }
}
