import CartritaEnvelope
import CartritaRuntime

/// Tier-2 agent for English text: statistics, keywords and an extractive summary, all computed
/// locally and deterministically (no model, no randomness).
///
/// Input: the text in `input.data` (a string) or one inline `text/*` file, at most 1 MiB.
/// - `text.stats`: counts (see `TextDocument` for what a character, word, sentence and
///   paragraph are), average word and sentence length, and the Flesch reading ease.
/// - `text.keywords`: the `count` (1–100, default 10) most frequent words that are not stop
///   words, with `count` and `score` (term frequency: occurrences / candidate words).
/// - `text.summarize`: the `sentences` (1–100, default 3) best sentences in original order.
/// - `text.analyze`: all three, under `stats`, `keywords` and `summary`.
/// Averages and the reading ease are rounded to 2 decimals; scores are exact quotients.
public struct LanguageMaestro: Agent {
    public typealias State = EmptyState

    public static let maxInputBytes = 1 << 20
    /// Keys of at most 128 UTF-8 bytes are keyword candidates: longer runs are identifiers,
    /// URLs or unspaced text, and would make the result large (bytes, not characters, bound it).
    static let maxKeywordBytes = 128
    /// The summary is cut (on a character boundary) at this size, the envelope's text limit.
    static let maxSummaryBytes = 64 * 1024
    /// Added to the first sentence's score (scores are in [0, 1]): a text's opening usually
    /// states its subject.
    static let leadBonus = 0.1

    public let address = Address("agent.languagemaestro@v1.0")
    public let taskTypes = ["text.summarize", "text.keywords", "text.stats", "text.analyze"]

    public init() {}

    public func handle(_ request: TaskRequest, state: inout EmptyState, context: DeliveryContext) -> AgentOutcome {
        guard self.taskTypes.contains(request.task.type) else {
            return AgentKit.unknownTaskType(request.task.type, agent: self.address, handles: self.taskTypes)
        }
        if let fetch = TextInput.fetchCall(request.input, maxBytes: Self.maxInputBytes) { return .call(fetch) }
        return AgentKit.run { () throws(Refusal) in try Self.work(request) }
    }

    /// The input file came back from the `files` service: the same work, on its bytes.
    public func resume(
        _ request: TaskRequest, continuation: MCPValue, result: IOResult, state: inout EmptyState, context: DeliveryContext
    ) -> AgentOutcome {
        TextInput.resume(request, result) { inline in self.handle(inline, state: &state, context: context) }
    }

    static func work(_ request: TaskRequest) throws(Refusal) -> MCPValue {
        let type = request.task.type
        let allowed: [String] = switch type {
        case "text.keywords": ["count"]
        case "text.summarize": ["sentences"]
        case "text.analyze": ["count", "sentences"]
        default: []
        }
        let parameters = try Parameters(request.task.parameters, allowed: allowed)
        let keywordCount = Int(try parameters.int("count", in: 1...100) ?? 10)
        let summaryLength = Int(try parameters.int("sentences", in: 1...100) ?? 3)
        let text = try TextInput.read(request.input, maxBytes: Self.maxInputBytes) { $0.hasPrefix("text/") }
        let document = TextDocument(text)
        guard document.wordCount > 0 else {
            throw .invalid(text.isEmpty ? "the text is empty" : "the text contains no words")
        }
        return Self.result(type, document, keywordCount: keywordCount, summaryLength: summaryLength)
    }

    /// The answer to a task of `type` on a document with words.
    static func result(_ type: String, _ document: TextDocument, keywordCount: Int, summaryLength: Int) -> MCPValue {
        // Statistics need no word counts: counting them (a dictionary of every word) is skipped.
        if type == "text.stats" { return Self.stats(document) }
        let frequencies = Self.frequencies(document)
        switch type {
        case "text.keywords": return Self.keywords(frequencies, count: keywordCount)
        case "text.summarize": return Self.summary(document, frequencies, sentences: summaryLength)
        default:
            return .map([
                "stats": Self.stats(document),
                "keywords": Self.keywords(frequencies, count: keywordCount),
                "summary": Self.summary(document, frequencies, sentences: summaryLength),
            ])
        }
    }

    // MARK: Statistics

    /// Flesch reading ease = 206.835 − 1.015 × words/sentences − 84.6 × syllables/words
    /// (syllables by `TextDocument.syllables`).
    static func stats(_ document: TextDocument) -> MCPValue {
        var letters = 0
        var syllables = 0
        // A word's syllables depend on its key alone: on the ASCII path counted once per
        // distinct key (-1: not yet).
        var syllablesOfSlot = [Int](repeating: -1, count: document.distinctKeys.count)
        for sentence in document.sentences {
            for word in sentence.words {
                letters += word.length
                if word.slot >= 0 {
                    let slot = Int(word.slot)
                    if syllablesOfSlot[slot] < 0 { syllablesOfSlot[slot] = TextDocument.syllables(word.key) }
                    syllables += syllablesOfSlot[slot]
                } else {
                    syllables += TextDocument.syllables(word.key)
                }
            }
        }
        let words = Double(document.wordCount)
        let sentences = Double(document.sentences.count)
        let ease = 206.835 - 1.015 * (words / sentences) - 84.6 * (Double(syllables) / words)
        return .map([
            "characters": .int(Int64(document.characters)),
            "words": .int(Int64(document.wordCount)),
            "sentences": .int(Int64(document.sentences.count)),
            "paragraphs": .int(Int64(document.paragraphs)),
            "syllables": .int(Int64(syllables)),
            "average_word_length": .double(AgentKit.rounded(Double(letters) / words)),
            "average_sentence_length": .double(AgentKit.rounded(words / sentences)),
            "flesch_reading_ease": .double(AgentKit.rounded(ease)),
        ])
    }

    // MARK: Keywords

    struct Frequencies {
        /// Candidate words in order of first appearance (a Dictionary never decides an order).
        var words: [String] = []
        /// Counts by key (the Character path).
        var counts: [String: Int] = [:]
        /// Counts by `Word.slot` (the ASCII path), 0 for a word that is not a candidate.
        var slotCounts: [Int] = []
        var total = 0
        var highest = 0

        /// How often the word occurs as a candidate (0: not one).
        func count(of word: TextDocument.Word) -> Int {
            word.slot >= 0 ? self.slotCounts[Int(word.slot)] : self.counts[word.key] ?? 0
        }

        /// The ASCII path's candidates by slot, parallel to `words`.
        var wordSlots: [Int32] = []

        /// Each candidate with its count, in order of first appearance.
        var counted: [(word: String, count: Int)] {
            if self.slotCounts.isEmpty { return self.words.map { ($0, self.counts[$0]!) } }
            return zip(self.words, self.wordSlots).map { ($0, self.slotCounts[Int($1)]) }
        }
    }

    /// Candidates: not a stop word, at least one letter (no bare numbers), at most
    /// `maxKeywordBytes` long.
    static func frequencies(_ document: TextDocument) -> Frequencies {
        guard document.isInterned else { return Self.frequenciesByKey(document) }
        // The ASCII path: whether a key is a candidate depends on its bytes alone, so it is
        // decided once per distinct key, and counting is indexing by slot.
        var result = Frequencies()
        let candidate = document.distinctKeys.map(Self.isCandidate)
        result.slotCounts = [Int](repeating: 0, count: document.distinctKeys.count)
        for sentence in document.sentences {
            for word in sentence.words where candidate[Int(word.slot)] {
                result.total += 1
                let slot = Int(word.slot)
                result.slotCounts[slot] += 1
                let count = result.slotCounts[slot]
                if count == 1 {
                    result.words.append(word.key)
                    result.wordSlots.append(word.slot)
                }
                result.highest = max(result.highest, count)
            }
        }
        return result
    }

    /// `frequencies` on the Character path: counted by key (String equality).
    static func frequenciesByKey(_ document: TextDocument) -> Frequencies {
        var result = Frequencies()
        for sentence in document.sentences {
            for word in sentence.words where Self.isCandidate(word.key) {
                result.total += 1
                // One hash per word: the count is incremented in place through the subscript.
                let count = Self.increment(&result.counts[word.key, default: 0])
                if count == 1 { result.words.append(word.key) }
                result.highest = max(result.highest, count)
            }
        }
        return result
    }

    @inline(__always)
    static func increment(_ value: inout Int) -> Int {
        value += 1
        return value
    }

    static func isCandidate(_ key: String) -> Bool {
        key.utf8.count <= Self.maxKeywordBytes && Self.hasLetter(key) && !Self.stopWords.contains(key)
    }

    /// Whether `key` holds a letter. ASCII words (nearly all) are decided on their bytes; any
    /// other byte sends the word to the Character path, which knows every script's letters.
    static func hasLetter(_ key: String) -> Bool {
        var ascii = true
        for byte in key.utf8 {
            if byte >= 0x80 {
                ascii = false
                break
            }
            if (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z") { return true }
        }
        return ascii ? false : key.contains(where: \.isLetter)
    }

    /// Highest count first; ties by the word's UTF-8 bytes.
    static func keywords(_ frequencies: Frequencies, count: Int) -> MCPValue {
        // The order is strict and total (distinct words never have the same bytes), so sorting
        // the (word, count) pairs gives the one ranking whatever the sort's algorithm.
        let ranked = frequencies.counted.sorted { lhs, rhs in
            lhs.count != rhs.count ? lhs.count > rhs.count : lhs.word.utf8.lexicographicallyPrecedes(rhs.word.utf8)
        }
        let total = Double(frequencies.total)
        let keywords: [MCPValue] = ranked.prefix(count).map { entry in
            let (word, occurrences) = entry
            return .map([
                "word": .string(word),
                "count": .int(Int64(occurrences)),
                "score": .double(Double(occurrences) / total),
            ])
        }
        return .map(["keywords": .array(keywords), "candidate_words": .int(Int64(frequencies.total))])
    }

    // MARK: Summary

    /// A sentence's score is the mean over its words of count(word) / highest count (stop words
    /// count 0), so long sentences are not favoured just for being long; the first sentence gets
    /// `leadBonus`. The best `sentences` (ties: the earlier) are returned in text order.
    static func summary(_ document: TextDocument, _ frequencies: Frequencies, sentences wanted: Int) -> MCPValue {
        let highest = Double(max(frequencies.highest, 1))
        let scores: [Double] = document.sentences.enumerated().map { index, sentence in
            var sum = 0.0
            for word in sentence.words { sum += Double(frequencies.count(of: word)) / highest }
            return sum / Double(sentence.words.count) + (index == 0 ? Self.leadBonus : 0)
        }
        let chosen = scores.indices
            .sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
            .prefix(wanted)
            .sorted()
        // Whitespace runs (line breaks inside a sentence) become one space.
        let joined = chosen.map { document.sentences[$0].text.split(whereSeparator: \.isWhitespace).joined(separator: " ") }
            .joined(separator: " ")
        let (summary, truncated) = AgentKit.clipped(joined, maxBytes: Self.maxSummaryBytes)
        return .map([
            "summary": .string(summary),
            "sentences": .array(chosen.map { .int(Int64($0)) }),
            "sentence_count": .int(Int64(document.sentences.count)),
            "truncated": .bool(truncated),
        ])
    }

    /// A common English stop-word list (function words, pronouns, auxiliaries and their
    /// contractions, with ' as the apostrophe, matching word keys).
    static let stopWords: Set<String> = [
        "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are",
        "aren't", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but",
        "by", "can", "can't", "cannot", "could", "couldn't", "did", "didn't", "do", "does", "doesn't",
        "doing", "don't", "down", "during", "each", "few", "for", "from", "further", "had", "hadn't",
        "has", "hasn't", "have", "haven't", "having", "he", "he'd", "he'll", "he's", "her", "here",
        "here's", "hers", "herself", "him", "himself", "his", "how", "how's", "i", "i'd", "i'll", "i'm",
        "i've", "if", "in", "into", "is", "isn't", "it", "it's", "its", "itself", "just", "let's", "may",
        "me", "might", "more", "most", "must", "mustn't", "my", "myself", "no", "nor", "not", "of", "off",
        "on", "once", "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own",
        "same", "shall", "shan't", "she", "she'd", "she'll", "she's", "should", "shouldn't", "so", "some",
        "such", "than", "that", "that's", "the", "their", "theirs", "them", "themselves", "then", "there",
        "there's", "these", "they", "they'd", "they'll", "they're", "they've", "this", "those", "through",
        "to", "too", "under", "until", "up", "upon", "us", "very", "was", "wasn't", "we", "we'd", "we'll",
        "we're", "we've", "were", "weren't", "what", "what's", "when", "when's", "where", "where's",
        "which", "while", "who", "who's", "whom", "why", "why's", "will", "with", "won't", "would",
        "wouldn't", "yet", "you", "you'd", "you'll", "you're", "you've", "your", "yours", "yourself",
        "yourselves",
    ]
}
