"""SentenceChunker on streamed text (pure, no models)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_tutor.speech.sentences import SentenceChunker


def tokens(text: str) -> list[str]:
    """Split as an LLM streams: each word with its leading space."""
    return re.findall(r"\s*\S+", text)


def stream(pieces: list[str], **options) -> list[str]:
    chunker = SentenceChunker(**options)
    out: list[str] = []
    for piece in pieces:
        out += chunker.push(piece)
    return out + chunker.flush()


def test_sentences_leave_as_soon_as_the_next_word_starts():
    chunker = SentenceChunker()
    assert chunker.push("Hello there.") == []  # could still be "there.5" or an abbreviation
    assert chunker.push(" How") == ["Hello there."]
    assert chunker.push(" are you?") == []
    assert chunker.push(" ") == ["How are you?"]
    assert chunker.push("Fine!") == []
    assert chunker.flush() == ["Fine!"]
    assert chunker.flush() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you? Fine!", ["Hello there.", "How are you?", "Fine!"]),
        ("Wait... what? Okay.", ["Wait...", "what?", "Okay."]),
        ("Line one\nLine two", ["Line one", "Line two"]),
        ("No final punctuation", ["No final punctuation"]),
        ("Great work!  Next question.", ["Great work!", "Next question."]),
    ],
)
def test_sentence_boundaries(text, expected):
    assert stream(tokens(text)) == expected
    assert stream([text]) == expected  # streamed or whole, the same pieces
    assert stream(list(text)) == expected  # and character by character


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith says hi. Bye.", ["Dr. Smith says hi.", "Bye."]),
        ("Mr. and Mrs. Lee came. Hi.", ["Mr. and Mrs. Lee came.", "Hi."]),
        ("Add things, e.g. apples and pears. Then count.", ["Add things, e.g. apples and pears.", "Then count."]),
        ("Use a ruler, i.e. a straight edge. Now draw.", ["Use a ruler, i.e. a straight edge.", "Now draw."]),
        ("Cats vs. dogs is fun. Yes.", ["Cats vs. dogs is fun.", "Yes."]),
    ],
)
def test_abbreviations_do_not_end_a_sentence(text, expected):
    assert stream(tokens(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 3.5 today. Next.", ["The answer is 3.5 today.", "Next."]),
        ("Pi is about 3.14159. Nice.", ["Pi is about 3.14159.", "Nice."]),
        ("It costs $2.50 now.", ["It costs $2.50 now."]),
    ],
)
def test_decimals_do_not_end_a_sentence(text, expected):
    assert stream(tokens(text)) == expected
    assert stream(list(text)) == expected


def test_first_long_clause_leaves_early():
    text = "Well, I think that seven plus five, which is a sum, is twelve. Right? Yes, it is, truly."
    assert stream(tokens(text)) == [
        "Well, I think that seven plus five,",  # 'Well,' alone is too short to say on its own
        "which is a sum, is twelve.",
        "Right?",
        "Yes, it is, truly.",  # only the very first piece may be a clause
    ]


def test_first_clause_is_said_before_the_sentence_ends():
    chunker = SentenceChunker()
    assert chunker.push("Seven plus five is twelve:") == []
    assert chunker.push(" seven") == ["Seven plus five is twelve:"]
    assert chunker.push(" and three make ten.") == []
    assert chunker.flush() == ["seven and three make ten."]


def test_short_first_clause_waits_for_the_sentence():
    assert stream(tokens("Yes, well done! Next question.")) == ["Yes, well done!", "Next question."]


def test_first_clause_minimum_is_configurable():
    assert stream(tokens("Yes, well done! Next."), first_clause_min_words=1) == ["Yes,", "well done!", "Next."]


def test_flush_returns_the_rest_once():
    chunker = SentenceChunker()
    assert chunker.push("Almost") == []
    assert chunker.push(" done") == []
    assert chunker.flush() == ["Almost done"]
    assert chunker.flush() == []
    assert SentenceChunker().flush() == []


def test_whitespace_only_yields_nothing():
    assert stream(["  ", "\n", " "]) == []


WORDS = st.sampled_from(["seven", "plus", "five", "is", "twelve", "Dr.", "3.5", "e.g.", "well", "done", "ten"])
ENDS = st.sampled_from(["", "", "", ".", "!", "?", ",", ";", "...", ":"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(WORDS, ENDS), min_size=1, max_size=40), st.integers(1, 7))
def test_no_text_is_lost_or_invented(words, chunk_size):
    text = " ".join(word + end for word, end in words)
    pieces = [text[i : i + chunk_size] for i in range(0, len(text), chunk_size)]
    out = stream(pieces)
    assert all(piece == piece.strip() and piece for piece in out)
    assert " ".join(out).split() == text.split()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('He said "Yes." Then left.', ['He said "Yes."', "Then left."]),
        ("Count on (like this.) Then stop.", ["Count on (like this.)", "Then stop."]),
    ],
)
def test_closing_quotes_stay_with_their_sentence(text, expected):
    assert stream(tokens(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Photosynthesis is how plants make their own food, using light, water and air. Next.",
         ["Photosynthesis is how plants make their own food,", "using light, water and air.", "Next."]),
        ("Plants need light to grow because light is where their energy comes from.",
         ["Plants need light to grow", "because light is where their energy comes from."]),
        ("Not quite, but you are close. Try again.", ["Not quite, but you are close.", "Try again."]),
        ("A long first sentence without any clause boundary in it at all. Ok.",
         ["A long first sentence without any clause boundary in it at all.", "Ok."]),
    ],
)
def test_a_long_first_sentence_is_said_from_its_opening_clause_even_when_it_arrives_whole(text, expected):
    assert stream([text]) == expected  # the offline tutor's reply arrives in one piece
    assert stream(tokens(text)) == expected


def test_only_the_first_sentence_is_split():
    text = "Yes. Photosynthesis is how plants make their own food, using light and water."
    assert stream([text]) == ["Yes.", "Photosynthesis is how plants make their own food, using light and water."]
