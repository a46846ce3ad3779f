import FoundationXML
import Foundation

/// Parses the small XML request bodies S3 accepts into a tree; nil when not well-formed.
/// Bodies come from anyone, so the tree is bounded: S3's documents nest four deep, the largest
/// (CompleteMultipartUpload) lists 10,000 parts of a few elements each, and no S3 body has a
/// document type (a DTD is where entity expansion lives, so one is refused outright).
final class XMLNode {
    let name: String
    var text = ""
    var children: [XMLNode] = []
    init(name: String) { self.name = name }

    /// Deepest nesting accepted (the root is depth 1).
    static let maxDepth = 16
    /// Most elements accepted in one document (10,000 parts × PartNumber, ETag and checksums).
    static let maxElements = 1 << 16

    func child(_ name: String) -> XMLNode? { children.first { $0.name == name } }
    func all(_ name: String) -> [XMLNode] { children.filter { $0.name == name } }

    static func parse(_ bytes: [UInt8]) -> XMLNode? {
        // Invalid UTF-8 in a name reaches Foundation's XMLParser as a C string it force-decodes:
        // the process traps (found by tools/fuzz). S3 bodies are UTF-8; refuse anything else.
        // A processing instruction without data reaches it as a NULL it calls strlen on (also
        // found by tools/fuzz): S3 bodies have none, so only a leading `<?xml ` declaration passes.
        guard String(validating: bytes, as: UTF8.self) != nil, !containsDocumentType(bytes), !containsProcessingInstruction(bytes) else { return nil }
        let delegate = TreeBuilder()
        let parser = XMLParser(data: Data(bytes))
        parser.shouldResolveExternalEntities = false
        parser.delegate = delegate
        guard parser.parse(), !delegate.overLimit, delegate.closed, let root = delegate.root else { return nil }  // an unclosed root is not a document
        return root
    }

    /// `<?` anywhere but a leading XML declaration.
    static func containsProcessingInstruction(_ bytes: [UInt8]) -> Bool {
        var i = bytes.startIndex
        while let lt = bytes[i...].firstIndex(of: UInt8(ascii: "<")) {
            if lt + 1 < bytes.endIndex, bytes[lt + 1] == UInt8(ascii: "?") {
                let declaration = lt == bytes.startIndex && bytes.count > 6 && bytes[2..<5].elementsEqual("xml".utf8)
                    && [UInt8(ascii: " "), 9, 10, 13].contains(bytes[5])
                if !declaration { return true }
            }
            i = lt + 1
        }
        return false
    }

    /// `<!DOCTYPE` or `<!ENTITY` anywhere (they are case-sensitive in XML).
    static func containsDocumentType(_ bytes: [UInt8]) -> Bool {
        let marks = [Array("<!DOCTYPE".utf8), Array("<!ENTITY".utf8)]
        var i = bytes.startIndex
        while let lt = bytes[i...].firstIndex(of: UInt8(ascii: "<")) {
            for m in marks where bytes[lt...].starts(with: m) { return true }
            i = lt + 1
        }
        return false
    }
}

private final class TreeBuilder: NSObject, XMLParserDelegate {
    var root: XMLNode?
    var stack: [XMLNode] = []
    var closed = false
    var elements = 0
    var overLimit = false

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        elements += 1
        guard stack.count < XMLNode.maxDepth, elements <= XMLNode.maxElements, !closed else {
            overLimit = true
            parser.abortParsing()
            return
        }
        let node = XMLNode(name: name)
        if let parent = stack.last { parent.children.append(node) } else if root == nil { root = node }
        stack.append(node)
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        _ = stack.popLast()
        if stack.isEmpty { closed = true }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        stack.last?.text += string
    }
}
