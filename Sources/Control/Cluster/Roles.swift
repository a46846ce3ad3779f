/// What a member may propose, by the role its credential names (`storage`, `compute`, `all`;
/// the join token chose it). A leader checks every forwarded change against the forwarder's
/// authenticated credential; a node checks what it is asked to propose against its own role,
/// so the CLI on a lesser node fails at once with the reason.
///
/// - `all`: every change.
/// - `storage`, `compute`: what the data edge does for its clients and joiners: bucket creation
///   and deletion (S3 is served on every node; the S3 user's rights are checked there) and
///   `admitNode` (a join passing through this node; the joiner's token is what admits it).
///   Not tokens, S3 users or keys, node removal, gossip or secrets keys, layout changes or settings.
///
/// The leader's own reconcilers (layout, migration, voters) propose whatever its role; a node
/// without a credential (a cluster from before join tokens) counts as `all`.
public enum Roles {
    public static func mayPropose(_ role: String, _ c: Command) -> Bool {
        switch role {
        case "all": return true
        case "storage", "compute":
            switch c {
            case .createBucket, .createOwnedBucket, .deleteBucket, .admitNode: return true
            case .initCluster, .putAccessKey, .deleteAccessKey, .put, .delete, .stageLayout, .revertLayout, .applyLayout, .finishMigration,
                .createToken, .revokeToken, .registerNode, .removeNode, .rotateGossipKey, .putUser, .deleteUser, .rotateSecrets,
                .setGossipKeyring:
                return false
            }
        default: return false
        }
    }

    /// The refusal a node's client reads.
    public static func refusal(_ role: String, _ c: Command) -> String {
        "this node's role (\(role)) may not \(c.what); run it on a node of role all"
    }
}

extension Command {
    /// What the change does, for a refusal.
    public var what: String {
        switch self {
        case .initCluster: "start a cluster"
        case .createBucket, .createOwnedBucket: "create buckets"
        case .deleteBucket: "delete buckets"
        case .putAccessKey, .putUser: "create S3 keys"
        case .deleteAccessKey, .deleteUser: "delete S3 keys"
        case .put, .delete: "change cluster settings"
        case .stageLayout, .revertLayout, .applyLayout, .finishMigration: "change the layout"
        case .createToken: "create join tokens"
        case .revokeToken: "revoke join tokens"
        case .admitNode, .registerNode: "admit nodes"
        case .removeNode: "remove nodes"
        case .rotateGossipKey, .setGossipKeyring: "change the gossip keyring"
        case .rotateSecrets: "rotate the secrets key"
        }
    }
}
