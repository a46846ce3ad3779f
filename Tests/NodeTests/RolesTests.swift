import Cluster
import Testing

/// The roles' allowlist: a lesser node keeps the data edge (buckets for S3 users, joins that pass
/// through it) and nothing an operator does; an unknown role gets nothing.
@Suite struct RolesTests {
    static let node = NodeRecord(name: "n", publicKey: [1], role: "all", joinedMs: 0, tokenID: "")
    static let token = TokenRecord(id: "t", secretHash: [], role: "all", createdMs: 0, expiresMs: 1, usesLeft: 1)
    static let edge: [Command] = [
        .createBucket(name: "b", createdMs: 0), .createOwnedBucket(name: "b", createdMs: 0, scheme: nil, owner: "o"), .deleteBucket(name: "b"),
        .admitNode(tokenID: "t", secretHash: [], node: "n", publicKey: [], nowMs: 0),
    ]
    static let administration: [Command] = [
        .initCluster(id: "c"), .putAccessKey(id: "k", secret: "s"), .deleteAccessKey(id: "k"), .put(key: "k", value: []), .delete(key: "k"),
        .revertLayout, .finishMigration(version: 1), .createToken(token), .revokeToken(id: "t"), .registerNode(node),
        .removeNode(name: "n", atMs: 0), .rotateGossipKey([]), .deleteUser(id: "k"),
    ]

    @Test func lesserRolesKeepTheDataEdgeOnly() {
        for role in ["storage", "compute"] {
            for c in Self.edge { #expect(Roles.mayPropose(role, c), "\(role) \(c)") }
            for c in Self.administration {
                #expect(!Roles.mayPropose(role, c), "\(role) \(c)")
                #expect(Roles.refusal(role, c).contains("role (\(role)) may not \(c.what)"))
            }
        }
        for c in Self.edge + Self.administration {
            #expect(Roles.mayPropose("all", c))
            #expect(!Roles.mayPropose("", c) && !Roles.mayPropose("admin", c))
        }
    }
}
