// Text that leaves the program for a terminal or a JSON reader: every character that could move a
// cursor, fake a line or reorder what is shown is escaped. Used by the CLI, the status line and the
// runtime's JSON output.

/// Escapes a string for a JSON string literal (paths and record payloads may hold anything):
/// everything outside printable ASCII as `\uXXXX`, so no reader splits a line on U+2028 and no
/// bidirectional control reorders what a terminal shows.
public func jsonEscaped(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20 || scalar.value >= 0x7F: appendJSONEscape(scalar, to: &out)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

/// Text for a terminal: every byte outside printable ASCII (0x20 to 0x7E) as `\xNN`, so bytes from
/// a card (escape sequences, carriage returns, newlines) cannot move the cursor or fake a line.
public func terminalSafe(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
        if byte >= 0x20 && byte <= 0x7E {
            out.unicodeScalars.append(Unicode.Scalar(byte))
        } else {
            out += "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }
    }
    return out
}

/// `scalar` as JSON escapes it: UTF-16 code units as \uXXXX (a pair beyond the BMP).
public func appendJSONEscape(_ scalar: Unicode.Scalar, to out: inout String) {
    for unit in String(scalar).utf16 {
        let hex = String(unit, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}
