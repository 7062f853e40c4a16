/// A text cut into paragraphs, sentences and words, the way LanguageMaestro counts them.
///
/// - Characters are Swift `Character`s (grapheme clusters): "é" is one whether precomposed or
///   not, CRLF is one. Letter and digit classes come from the toolchain's Unicode tables.
/// - Paragraphs are runs of non-blank lines; blank (whitespace-only) lines separate them. Like
///   a sentence, a paragraph without any word ("***") is not counted.
/// - A sentence ends at `.` `!` `?` `…` (with any further terminators and closing quotes or
///   brackets) when whitespace or the paragraph's end follows, unless the next word starts with
///   a lower-case letter ("e.g. this", "Dr. smith" rarely, "Really?" she said): that is a cheap,
///   predictable guard against abbreviations. The full-width terminators `。！？` end a sentence
///   with nothing after them, as CJK text uses no spaces. A paragraph's end always ends a
///   sentence, so headings without a period are sentences of their own. A "sentence" without
///   any word (a lone "...") is not counted.
/// - A word is a maximal run of letters and digits (Unicode-aware: CJK runs are words, split
///   only at non-letters). An apostrophe (' or ’) between a letter or digit and a letter stays
///   inside the word, so "don't" is one word, as a reader counts it. Words are lower-cased
///   (Unicode default case mapping, no locale) and ’ is written ' in their key.
struct TextDocument {
    struct Word {
        /// Lower-cased spelling, the key for keyword counting.
        var key: String
        /// Letters and digits in the word (apostrophes not counted).
        var length: Int
        /// On the ASCII path, the key's position in `distinctKeys` (equal keys, equal slots), so
        /// keyword counting and syllables work per distinct word by index instead of hashing
        /// every occurrence; -1 on the Character path, whose keys are compared as Strings
        /// (canonical equivalence, which bytes cannot decide).
        var slot: Int32 = -1
    }

    struct Sentence {
        /// Trimmed of surrounding whitespace.
        var text: Substring
        var words: [Word]
    }

    var characters: Int
    var paragraphs: Int
    var sentences: [Sentence]
    var wordCount: Int
    /// The ASCII path's distinct word keys, in order of first appearance (empty on the
    /// Character path: there every `Word.slot` is -1).
    var distinctKeys: [String] = []
    /// The ASCII path's key → slot table (see `Word.slot`).
    private var interner = KeyInterner()

    static let terminators: Set<Character> = [".", "!", "?", "…", "‼", "⁇", "⁈", "⁉"]
    static let fullWidthTerminators: Set<Character> = ["。", "！", "？", "｡"]
    static let closers: Set<Character> = ["\"", "'", "”", "’", "»", ")", "]", "}", "」", "』", "）"]

    init(_ text: String, asciiFastPath: Bool = true) {
        self.paragraphs = 0
        self.sentences = []
        self.wordCount = 0
        self.characters = 0
        // Most text is ASCII: there every byte is a character (CR excepted: CRLF is one), and
        // the same rules run on bytes, without Character's grapheme breaking and Unicode
        // property lookups. The results are the same (the tests compare both paths).
        if asciiFastPath && Self.asciiFastPathApplies(text) {
            self.analyzeASCII(text)
            return
        }
        self.characters = text.count

        // Paragraphs: group consecutive non-blank lines, as slices of the original text.
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        var first: Substring? = nil
        var last: Substring? = nil
        for line in lines + [""] {
            if line.allSatisfy(\.isWhitespace) {
                if let start = first, let end = last {
                    let before = self.sentences.count
                    self.addSentences(of: text[start.startIndex..<end.endIndex])
                    if self.sentences.count > before { self.paragraphs += 1 }
                }
                first = nil
            } else {
                if first == nil { first = line }
                last = line
            }
        }
    }

    static func asciiFastPathApplies(_ text: String) -> Bool {
        // On the contiguous bytes when the string has them (native strings do): the generic
        // UTF8View iteration costs several times more per byte.
        if let applies = text.utf8.withContiguousStorageIfAvailable({ bytes in bytes.allSatisfy { $0 < 0x80 && $0 != 0x0D } }) {
            return applies
        }
        return text.utf8.allSatisfy { $0 < 0x80 && $0 != 0x0D }
    }

    /// Whether the document was cut on the ASCII path (every word has a slot).
    var isInterned: Bool { self.wordCount > 0 && self.sentences[0].words[0].slot >= 0 }

    // MARK: The ASCII path (same rules, on bytes)

    static func isASCIIWhitespace(_ byte: UInt8) -> Bool { byte == 0x20 || (byte >= 0x09 && byte <= 0x0D) }
    static func isASCIINewline(_ byte: UInt8) -> Bool { byte >= 0x0A && byte <= 0x0D }
    static func isASCIILetter(_ byte: UInt8) -> Bool { (byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7A }
    static func isASCIITerminator(_ byte: UInt8) -> Bool { byte == 0x2E || byte == 0x21 || byte == 0x3F }
    static func isASCIICloser(_ byte: UInt8) -> Bool {
        byte == 0x22 || byte == 0x27 || byte == 0x29 || byte == 0x5D || byte == 0x7D
    }

    mutating func analyzeASCII(_ text: String) {
        let utf8 = text.utf8
        let bytes = Array(utf8)
        self.characters = bytes.count
        func substring(_ range: Range<Int>) -> Substring {
            text[utf8.index(utf8.startIndex, offsetBy: range.lowerBound)..<utf8.index(utf8.startIndex, offsetBy: range.upperBound)]
        }
        // Paragraphs: runs of non-blank lines.
        var paragraphStart: Int? = nil
        var paragraphEnd = 0
        var lineStart = 0
        var position = 0
        while position <= bytes.count {
            if position == bytes.count || Self.isASCIINewline(bytes[position]) {
                let blank = bytes[lineStart..<position].allSatisfy(Self.isASCIIWhitespace)
                if blank {
                    if let start = paragraphStart {
                        let before = self.sentences.count
                        self.addSentencesASCII(bytes, start..<paragraphEnd, substring)
                        if self.sentences.count > before { self.paragraphs += 1 }
                    }
                    paragraphStart = nil
                } else {
                    if paragraphStart == nil { paragraphStart = lineStart }
                    paragraphEnd = position
                }
                lineStart = position + 1
            }
            position += 1
        }
        if let start = paragraphStart {
            let before = self.sentences.count
            self.addSentencesASCII(bytes, start..<paragraphEnd, substring)
            if self.sentences.count > before { self.paragraphs += 1 }
        }
    }

    private mutating func addSentencesASCII(_ bytes: [UInt8], _ paragraph: Range<Int>, _ substring: (Range<Int>) -> Substring) {
        let end = paragraph.upperBound
        var start = paragraph.lowerBound
        var index = start
        while index < end {
            guard Self.isASCIITerminator(bytes[index]) else {
                index += 1
                continue
            }
            var after = index + 1
            while after < end, Self.isASCIITerminator(bytes[after]) || Self.isASCIICloser(bytes[after]) { after += 1 }
            var boundary = after == end || Self.isASCIIWhitespace(bytes[after])
            if boundary, let next = bytes[after..<end].first(where: { !Self.isASCIIWhitespace($0) }), next >= 0x61, next <= 0x7A {
                boundary = false
            }
            if boundary {
                self.addSentenceASCII(bytes, start..<after, substring)
                start = after
            }
            index = after
        }
        self.addSentenceASCII(bytes, start..<end, substring)
    }

    private mutating func addSentenceASCII(_ bytes: [UInt8], _ raw: Range<Int>, _ substring: (Range<Int>) -> Substring) {
        let words = self.wordsASCII(bytes, raw)
        guard !words.isEmpty else { return }
        let trimmedStart = bytes[raw].firstIndex { !Self.isASCIIWhitespace($0) } ?? raw.lowerBound
        let trimmedEnd = bytes[raw].lastIndex { !Self.isASCIIWhitespace($0) }.map { $0 + 1 } ?? raw.upperBound
        self.sentences.append(Sentence(text: substring(trimmedStart..<trimmedEnd), words: words))
        self.wordCount += words.count
    }

    /// The words of `bytes[range]`. A word's key is its bytes lower-cased: letters, digits and
    /// the apostrophes kept inside it (between a letter or digit and a letter) form one
    /// contiguous run of the text, so the key is hashed and looked up straight from the text,
    /// and only a new key is copied (into the interner and one String).
    mutating func wordsASCII(_ bytes: [UInt8], _ range: Range<Int>) -> [Word] {
        var words: [Word] = []
        // English words average five letters and a space: room for that many at once, instead
        // of growing the array four or five times per sentence.
        words.reserveCapacity(range.count / 6 + 1)
        bytes.withUnsafeBufferPointer { text in
            let end = range.upperBound
            var index = range.lowerBound
            while index < end {
                // A word starts at a letter or a digit (an apostrophe cannot start one).
                guard Self.isASCIILetterOrDigit(text[index]) else {
                    index += 1
                    continue
                }
                let start = index
                var hash = KeyInterner.emptyHash
                var length = 0
                while index < end {
                    let byte = text[index]
                    if Self.isASCIILetterOrDigit(byte) {
                        hash = KeyInterner.hash(hash, KeyInterner.lowercased(byte))
                        length += 1
                    } else if byte == 0x27, text[index - 1] != 0x27, index + 1 < end, Self.isASCIILetter(text[index + 1]) {
                        hash = KeyInterner.hash(hash, 0x27)
                    } else {
                        break
                    }
                    index += 1
                }
                // A repeated word reuses its key's String; a new one is made once and numbered.
                let spelling = UnsafeBufferPointer(rebasing: text[start..<index])
                let (slot, isNew) = self.interner.slot(of: spelling, hash: hash)
                if isNew { self.distinctKeys.append(self.interner.key(slot)) }
                words.append(Word(key: self.distinctKeys[Int(slot)], length: length, slot: slot))
            }
        }
        return words
    }

    @inline(__always)
    static func isASCIILetterOrDigit(_ byte: UInt8) -> Bool { Self.isASCIILetter(byte) || (byte >= 0x30 && byte <= 0x39) }

    private mutating func addSentences(of paragraph: Substring) {
        let end = paragraph.endIndex
        var start = paragraph.startIndex
        var index = start
        while index < end {
            let character = paragraph[index]
            if let ascii = character.asciiValue, ascii != 0x2E, ascii != 0x21, ascii != 0x3F {
                // The only ASCII terminators are . ! and ?: skip the set lookups for the rest.
                index = paragraph.index(after: index)
                continue
            }
            let fullWidth = Self.fullWidthTerminators.contains(character)
            guard fullWidth || Self.terminators.contains(character) else {
                index = paragraph.index(after: index)
                continue
            }
            var after = paragraph.index(after: index)
            while after < end, Self.terminators.contains(paragraph[after]) || Self.fullWidthTerminators.contains(paragraph[after])
                || Self.closers.contains(paragraph[after])
            {
                after = paragraph.index(after: after)
            }
            var boundary = fullWidth || after == end || paragraph[after].isWhitespace
            if boundary, !fullWidth, let next = paragraph[after...].first(where: { !$0.isWhitespace }), next.isLowercase {
                boundary = false
            }
            if boundary {
                self.addSentence(paragraph[start..<after])
                start = after
            }
            index = after
        }
        self.addSentence(paragraph[start..<end])
    }

    private mutating func addSentence(_ raw: Substring) {
        let words = Self.words(in: raw)
        guard !words.isEmpty else { return }
        let trimmedStart = raw.firstIndex { !$0.isWhitespace } ?? raw.startIndex
        let trimmedEnd = raw.lastIndex { !$0.isWhitespace }.map { raw.index(after: $0) } ?? raw.endIndex
        self.sentences.append(Sentence(text: raw[trimmedStart..<trimmedEnd], words: words))
        self.wordCount += words.count
    }

    static func words(in text: Substring) -> [Word] {
        var words: [Word] = []
        var key = ""
        var length = 0
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            let next = text.index(after: index)
            if let ascii = character.asciiValue {
                // ASCII fast path: the Unicode property lookups below cost far more than the
                // rest of the analysis, and most text is ASCII. Same answers as the slow path.
                let isLetter = (ascii | 0x20) >= 0x61 && (ascii | 0x20) <= 0x7A
                if isLetter || (ascii >= 0x30 && ascii <= 0x39) {
                    key.unicodeScalars.append(Unicode.Scalar(isLetter ? ascii | 0x20 : ascii))
                    length += 1
                    index = next
                    continue
                }
                if ascii != 0x27 || length == 0 || key.hasSuffix("'") || next >= text.endIndex || !text[next].isLetter {
                    if length > 0 {
                        words.append(Word(key: key, length: length))
                        key = ""
                        length = 0
                    }
                    index = next
                    continue
                }
                key += "'"
            } else if character.isLetter || character.isNumber {
                key += character.lowercased()
                length += 1
            } else if (character == "'" || character == "’"), length > 0, !key.hasSuffix("'"), next < text.endIndex, text[next].isLetter {
                key += "'"
            } else if length > 0 {
                words.append(Word(key: key, length: length))
                key = ""
                length = 0
            }
            index = next
        }
        if length > 0 { words.append(Word(key: key, length: length)) }
        return words
    }

    // MARK: Syllables

    static let vowels: Set<Character> = [
        "a", "e", "i", "o", "u", "y", "à", "á", "â", "ã", "ä", "å", "æ", "è", "é", "ê", "ë",
        "ì", "í", "î", "ï", "ò", "ó", "ô", "õ", "ö", "ø", "ù", "ú", "û", "ü", "ÿ", "œ",
    ]

    /// English syllables by a heuristic (Flesch needs a count, not a dictionary):
    /// 1. count groups of consecutive vowels (a e i o u y and accented Latin vowels; a leading
    ///    "y" is a consonant: "yes");
    /// 2. a final lone "e" is silent ("make", "are") except in consonant + "le" ("table");
    ///    a final "ed" is silent unless after t or d ("jumped" 1, "wanted" 2); a final "es" is
    ///    silent unless after s, x, z, c, g or h ("makes" 1, "boxes" 2, "pages" 2). "Lone" means
    ///    the e follows a consonant, so "agree", "goes", "played" keep their vowel group;
    /// 3. at least 1, which is also the count for a word with no letters (a number) or no vowel.
    /// Exact for most common words, off by one on some ("every", "business"), as every such
    /// heuristic is.
    static func syllables(_ key: String) -> Int {
        // Keys are lower case already; an ASCII key is counted on its bytes, the same rules.
        var ascii = key
        if let count = ascii.withUTF8({ bytes -> Int? in
            guard bytes.allSatisfy({ $0 < 0x80 }) else { return nil }
            return Self.asciiSyllables(bytes)
        }) {
            return count
        }
        return Self.characterSyllables(key)
    }

    /// `syllables` on Characters: any key (the reference the ASCII path must agree with).
    static func characterSyllables(_ key: String) -> Int {
        let letters: [Character] =
            key.utf8.allSatisfy({ $0 < 0x80 })
            ? key.utf8.filter { $0 >= 0x61 && $0 <= 0x7A }.map { Character(Unicode.Scalar($0)) }
            : key.filter(\.isLetter).map { $0 }
        let count = letters.count
        guard count > 0 else { return 1 }
        func vowel(_ at: Int) -> Bool { Self.vowels.contains(letters[at]) && !(at == 0 && letters[at] == "y") }
        var groups = 0
        for at in 0..<count where vowel(at) && (at == 0 || !vowel(at - 1)) { groups += 1 }
        if groups > 1, count >= 3 {
            let last = letters[count - 1]
            if last == "e", !vowel(count - 2), !(letters[count - 2] == "l" && !vowel(count - 3)) {
                groups -= 1
            } else if letters[count - 2] == "e", !vowel(count - 3) {
                let before = letters[count - 3]
                if last == "d", before != "t", before != "d" { groups -= 1 }
                if last == "s", !"sxzcgh".contains(before) { groups -= 1 }
            }
        }
        return max(1, groups)
    }

    /// `syllables` on a lower-case ASCII key: the same three rules, on its letters' bytes.
    static func asciiSyllables(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        // Letters only (a word's key may hold digits and apostrophes); words are short.
        var letters: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var count = 0
        let fits = withUnsafeMutableBytes(of: &letters) { storage -> Bool in
            for byte in key where byte >= 0x61 && byte <= 0x7A {
                guard count < storage.count else { return false }
                storage[count] = byte
                count += 1
            }
            return true
        }
        guard fits else { return Self.characterSyllables(String(decoding: key, as: UTF8.self)) }  // over 32 letters
        guard count > 0 else { return 1 }
        return withUnsafeBytes(of: &letters) { storage in
            func isVowel(_ byte: UInt8) -> Bool {
                byte == 0x61 || byte == 0x65 || byte == 0x69 || byte == 0x6F || byte == 0x75 || byte == 0x79
            }
            func vowel(_ at: Int) -> Bool { isVowel(storage[at]) && !(at == 0 && storage[at] == 0x79) }
            var groups = 0
            for at in 0..<count where vowel(at) && (at == 0 || !vowel(at - 1)) { groups += 1 }
            if groups > 1, count >= 3 {
                let last = storage[count - 1]
                if last == 0x65, !vowel(count - 2), !(storage[count - 2] == 0x6C && !vowel(count - 3)) {
                    groups -= 1
                } else if storage[count - 2] == 0x65, !vowel(count - 3) {
                    let before = storage[count - 3]
                    if last == 0x64, before != 0x74, before != 0x64 { groups -= 1 }
                    if last == 0x73, ![0x73, 0x78, 0x7A, 0x63, 0x67, 0x68].contains(before) { groups -= 1 }
                }
            }
            return max(1, groups)
        }
    }
}


/// Word keys (ASCII bytes) → slots 0, 1, 2… in order of first appearance: open addressing with
/// linear probing and a fixed hash (FNV-1a), so no per-process hash seed and no String hashing.
/// Only looked up, never iterated: the table's layout decides nothing. On ASCII bytes, equal
/// bytes are exactly equal Strings, so a slot stands for one key as `String ==` sees it.
struct KeyInterner {
    /// Slot + 1 per bucket (0: empty); at most half full.
    private var buckets: [Int32] = []
    /// The keys' bytes, one after another; key `slot` is `bytes[starts[slot]..<starts[slot + 1]]`.
    private var bytes: [UInt8] = []
    private var starts: [Int] = [0]

    var count: Int { self.starts.count - 1 }

    /// FNV-1a, fed one byte at a time as a word's key is built.
    static let emptyHash: UInt64 = 0xCBF2_9CE4_8422_2325

    @inline(__always)
    static func hash(_ hash: UInt64, _ byte: UInt8) -> UInt64 { (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }

    /// The hash of `key` lower-cased (what `slot(of:hash:)` expects).
    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 { key.reduce(Self.emptyHash) { Self.hash($0, Self.lowercased($1)) } }

    /// ASCII letters in lower case; every other byte as it is.
    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 { TextDocument.isASCIILetter(byte) ? byte | 0x20 : byte }

    @inline(__always)
    static func bucket(_ hash: UInt64, mask: Int) -> Int { Int(truncatingIfNeeded: hash ^ (hash >> 29)) & mask }

    /// The slot of `key` lower-cased (the key is a word's spelling in the text: ASCII letters are
    /// compared and stored in lower case), and whether it was new (then the caller records the
    /// key's String). `hash` is `hash(key)`, computed while the word was read.
    mutating func slot(of key: UnsafeBufferPointer<UInt8>, hash: UInt64) -> (slot: Int32, isNew: Bool) {
        if (self.count + 1) * 2 > self.buckets.count { self.grow() }
        let mask = self.buckets.count - 1
        var index = Self.bucket(hash, mask: mask)
        while true {
            let entry = self.buckets[index]
            if entry == 0 {
                let slot = Int32(self.count)
                for byte in key { self.bytes.append(Self.lowercased(byte)) }
                self.starts.append(self.bytes.count)
                self.buckets[index] = slot + 1
                return (slot, true)
            }
            let slot = Int(entry - 1)
            let start = self.starts[slot]
            if self.starts[slot + 1] - start == key.count, self.bytes.withUnsafeBufferPointer({ stored in
                for offset in 0..<key.count where stored[start + offset] != Self.lowercased(key[offset]) { return false }
                return true
            }) {
                return (Int32(slot), false)
            }
            index = (index + 1) & mask
        }
    }

    /// The stored (lower-cased) key of `slot`, as a String.
    func key(_ slot: Int32) -> String {
        self.bytes.withUnsafeBufferPointer { stored in
            String(decoding: UnsafeBufferPointer(rebasing: stored[self.starts[Int(slot)]..<self.starts[Int(slot) + 1]]), as: UTF8.self)
        }
    }

    private mutating func grow() {
        let capacity = max(64, self.buckets.count * 2)
        self.buckets = [Int32](repeating: 0, count: capacity)
        let mask = capacity - 1
        for slot in 0..<self.count {
            var index = self.bytes[self.starts[slot]..<self.starts[slot + 1]].withUnsafeBufferPointer { Self.bucket(Self.hash($0), mask: mask) }
            while self.buckets[index] != 0 { index = (index + 1) & mask }
            self.buckets[index] = Int32(slot + 1)
        }
    }
}
