import CartritaEnvelope

/// An RFC 4180 reader over UTF-8 bytes.
///
/// Rules (RFC 4180, plus what real files need):
/// - Records end at CRLF, LF or a lone CR; the last record may lack a line break.
/// - A field starting with `"` is quoted: it runs to the next `"` not doubled, `""` stands for
///   one `"`, and delimiters and line breaks inside it are data. After the closing quote only a
///   delimiter, a line break or the end may follow; anything else is an error, as is a quote
///   that never closes.
/// - An unquoted field is trimmed of ASCII spaces and tabs (`a, b` is common in hand-written
///   files); a quoted field is kept verbatim, the quotes say its spaces are meant. A `"` inside
///   an unquoted field is kept as data (lenient: `5" screen`), since nothing else can be meant.
/// - A blank line (one unquoted field, empty after trimming) is skipped, so trailing newlines do
///   not make empty rows; a one-column file writes an empty value as `""`.
///
/// The delimiter, quote and line breaks are ASCII, and ASCII bytes never occur inside a
/// multi-byte UTF-8 sequence, so cutting valid UTF-8 at them gives valid UTF-8 fields.
enum CSV {
    static let quote = UInt8(ascii: "\"")
    static let cr = UInt8(ascii: "\r")
    static let lf = UInt8(ascii: "\n")

    /// Calls `record` with each record's fields and the line it starts on (1-based). A record
    /// with more than `maxFields` fields is refused while it is read, so memory stays bounded.
    static func parse(
        _ bytes: [UInt8], delimiter: UInt8, maxFields: Int,
        record: (_ fields: [String], _ line: Int) throws(Refusal) -> Void
    ) throws(Refusal) {
        let end = bytes.count
        var index = 0
        var line = 1
        var fields: [String] = []
        var field: [UInt8] = []
        while index < end {
            let recordLine = line
            fields.removeAll(keepingCapacity: true)
            var sawQuotedField = false
            // One field per iteration; the record ends at a line break or the end of the input.
            while true {
                field.removeAll(keepingCapacity: true)
                if index < end, bytes[index] == Self.quote {
                    sawQuotedField = true
                    let openedOn = line
                    index += 1
                    while true {
                        guard index < end else {
                            throw .invalid("unterminated quoted field starting on line \(openedOn)")
                        }
                        let byte = bytes[index]
                        if byte == Self.quote {
                            if index + 1 < end, bytes[index + 1] == Self.quote {
                                field.append(Self.quote)
                                index += 2
                                continue
                            }
                            index += 1
                            break
                        }
                        if byte == Self.lf || (byte == Self.cr && (index + 1 == end || bytes[index + 1] != Self.lf)) {
                            line += 1
                        }
                        field.append(byte)
                        index += 1
                    }
                    if index < end, bytes[index] != delimiter, bytes[index] != Self.cr, bytes[index] != Self.lf {
                        throw .invalid("unexpected character after a closing quote on line \(line) (a quote inside a quoted field is written \"\")")
                    }
                    fields.append(String(decoding: field, as: UTF8.self))
                } else {
                    while index < end, bytes[index] != delimiter, bytes[index] != Self.cr, bytes[index] != Self.lf {
                        field.append(bytes[index])
                        index += 1
                    }
                    fields.append(Self.trimmed(field))
                }
                guard fields.count <= maxFields else {
                    throw .invalid("the record on line \(recordLine) has more than \(maxFields) fields")
                }
                if index < end, bytes[index] == delimiter {
                    index += 1
                    continue  // a delimiter at the very end still opens one (empty) field
                }
                break
            }
            // At a line break or the end: consume CRLF, LF or CR.
            if index < end {
                if bytes[index] == Self.cr, index + 1 < end, bytes[index + 1] == Self.lf { index += 1 }
                index += 1
                line += 1
            }
            if !sawQuotedField, fields.count == 1, fields[0].isEmpty { continue }  // blank line
            try record(fields, recordLine)
        }
    }

    static func trimmed(_ bytes: [UInt8]) -> String {
        let blank: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 }
        guard let first = bytes.firstIndex(where: { !blank($0) }), let last = bytes.lastIndex(where: { !blank($0) }) else {
            return ""
        }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }
}
