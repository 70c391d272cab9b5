"""Write the bundled probing datasets (``pos.csv``, ``number.csv``, ``facts.csv``) next to this file.

Run ``python interp_core/data/probing/build_datasets.py`` to rebuild them; the output is
deterministic (seeded). Every word list below carries its part-of-speech tag, so each
generated sentence is labelled word by word by construction; the hand-written sentences at
the end add ambiguous words ("saw", "book", "park", "can") whose tag depends on context.

Formats (the same ones a user uploads):
- token level: ``text,labels``; ``text`` is words separated by single spaces (punctuation
  is its own word) and ``labels`` has one tag per word.
- rule-labelled token level: ``text`` only; the loader labels every word by a rule.
- sentence level: ``text,label``.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

# --- part of speech -----------------------------------------------------------------------
NOUN_AGENT = "dog cat bird teacher child farmer doctor girl boy man woman horse student king baker pilot neighbor driver".split()
NOUN_THING = "book ball letter apple key box cup car song picture door window chair bottle coat bag map hat".split()
NOUN_PLACE = "river garden house road bridge hill kitchen market forest station library field village shop beach".split()
NOUN_PLURAL = "dogs birds children students farmers trees cars boxes apples horses friends workers".split()
PROPN = "Anna Tom Maria Peter Sarah David Emma James London Paris Berlin Rome".split()
PERSON = PROPN[:8]
CITY = PROPN[8:]
ADJ = "old small big red quiet happy tall young green dark bright heavy cold warm new empty busy tired clever strange".split()
V_INTR_PAST = "slept laughed waited smiled arrived cried jumped sang danced fell ran walked".split()
V_TR_PAST = "found saw opened painted carried bought washed sold built watched dropped cleaned".split()
V_BASE = "find see open paint carry buy wash sell build watch drop clean".split()
V_ING = "reading painting carrying washing watching cleaning opening building".split()
V_INTR_ING = "walking running waiting sleeping singing dancing".split()
ADP = "in on under near behind beside into across through over".split()
ADV_MANNER = "quickly slowly quietly carefully happily loudly".split()
ADV_TIME = "Yesterday Today Later Suddenly Sometimes".split()
ADV_DEGREE = "very quite too really".split()
PRON_SUBJ = "he she they we I you".split()
PRON_OBJ = "him her them us me".split()
NUM = "two three four five six seven ten twelve".split()
CCONJ = "and but or".split()


def article(next_word: str, rng: random.Random) -> str:
    """A determiner that agrees with the next word ("an" before a vowel sound)."""
    choice = rng.choice(["the", "the", "a", "this", "that", "every"])
    if choice == "a" and next_word[0].lower() in "aeiou":
        return "an"
    return choice


def cap(word: str) -> str:
    return word[0].upper() + word[1:]


def _np(rng: random.Random, nouns: list[str], with_adj: bool) -> list[tuple[str, str]]:
    """Determiner (+ adjective) + noun."""
    noun = rng.choice(nouns)
    words = [(rng.choice(ADJ), "ADJ"), (noun, "NOUN")] if with_adj else [(noun, "NOUN")]
    return [(article(words[0][0], rng), "DET"), *words]


def _subject(rng: random.Random) -> list[tuple[str, str]]:
    kind = rng.random()
    if kind < 0.35:
        return [(rng.choice(PRON_SUBJ), "PRON")]
    if kind < 0.55:
        return [(rng.choice(PERSON), "PROPN")]
    return _np(rng, NOUN_AGENT, rng.random() < 0.5)


def _object(rng: random.Random) -> list[tuple[str, str]]:
    if rng.random() < 0.2:
        return [(rng.choice(PRON_OBJ), "PRON")]
    return _np(rng, NOUN_THING, rng.random() < 0.5)


def _place(rng: random.Random) -> list[tuple[str, str]]:
    if rng.random() < 0.15:
        return [(rng.choice(["in", "near"]), "ADP"), (rng.choice(CITY), "PROPN")]
    return [(rng.choice(ADP), "ADP"), *_np(rng, NOUN_PLACE, rng.random() < 0.3)]


def _template(rng: random.Random, k: int) -> list[tuple[str, str]]:
    """One sentence of template ``k`` (0..9) as (word, tag) pairs, without the final period."""
    if k == 0:  # The old dog slept under the table
        return _subject(rng) + [(rng.choice(V_INTR_PAST), "VERB")] + _place(rng)
    if k == 1:  # Anna found a small key
        return _subject(rng) + [(rng.choice(V_TR_PAST), "VERB")] + _object(rng)
    if k == 2:  # They opened the door slowly
        return _subject(rng) + [(rng.choice(V_TR_PAST), "VERB")] + _object(rng) + [(rng.choice(ADV_MANNER), "ADV")]
    if k == 3:  # The soup was very cold
        return _np(rng, NOUN_THING + NOUN_AGENT, False) + [("was", "AUX"), (rng.choice(ADV_DEGREE), "ADV"), (rng.choice(ADJ), "ADJ")]
    if k == 4:  # Three birds sat on the fence
        return [(rng.choice(NUM), "NUM"), (rng.choice(NOUN_PLURAL), "NOUN"), (rng.choice(V_INTR_PAST), "VERB")] + _place(rng)
    if k == 5:  # The cat and the dog waited quietly
        return (_np(rng, NOUN_AGENT, False) + [("and", "CCONJ")] + _np(rng, NOUN_AGENT, False)
                + [(rng.choice(V_INTR_PAST), "VERB"), (rng.choice(ADV_MANNER), "ADV")])
    if k == 6:  # Yesterday we painted the red door
        return [(rng.choice(ADV_TIME), "ADV")] + _subject(rng) + [(rng.choice(V_TR_PAST), "VERB")] + _object(rng)
    if k == 7:  # She will carry the box into the kitchen
        aux = rng.choice(["will", "can", "should", "must"])
        return _subject(rng) + [(aux, "AUX"), (rng.choice(V_BASE), "VERB")] + _object(rng) + _place(rng)
    if k == 8:  # The young students were walking through the forest
        subj = [("the", "DET"), (rng.choice(ADJ), "ADJ"), (rng.choice(NOUN_PLURAL), "NOUN")]
        return subj + [("were", "AUX"), (rng.choice(V_INTR_ING), "VERB")] + _place(rng)
    # The girl dropped the cup but she smiled
    first = _subject(rng) + [(rng.choice(V_TR_PAST), "VERB")] + _object(rng)
    return first + [(rng.choice(CCONJ[:2]), "CCONJ"), (rng.choice(PRON_SUBJ), "PRON"), (rng.choice(V_INTR_PAST), "VERB")]


HAND_WRITTEN = [
    "I/PRON saw/VERB the/DET saw/NOUN on/ADP the/DET table/NOUN ./PUNCT",
    "The/DET old/ADJ saw/NOUN was/AUX very/ADV sharp/ADJ ./PUNCT",
    "She/PRON will/AUX book/VERB a/DET room/NOUN near/ADP the/DET station/NOUN ./PUNCT",
    "The/DET book/NOUN was/AUX on/ADP the/DET chair/NOUN ./PUNCT",
    "We/PRON can/AUX park/VERB the/DET car/NOUN behind/ADP the/DET shop/NOUN ./PUNCT",
    "The/DET children/NOUN played/VERB in/ADP the/DET park/NOUN ./PUNCT",
    "He/PRON opened/VERB a/DET can/NOUN of/ADP soup/NOUN ./PUNCT",
    "They/PRON can/AUX swim/VERB across/ADP the/DET river/NOUN ./PUNCT",
    "Turn/VERB on/ADP the/DET light/NOUN ./PUNCT",
    "The/DET bag/NOUN was/AUX light/ADJ ./PUNCT",
    "I/PRON watch/VERB the/DET birds/NOUN every/DET morning/NOUN ./PUNCT",
    "My/PRON watch/NOUN stopped/VERB yesterday/ADV ./PUNCT",
    "The/DET run/NOUN was/AUX long/ADJ and/CCONJ hard/ADJ ./PUNCT",
    "They/PRON run/VERB in/ADP the/DET park/NOUN every/DET day/NOUN ./PUNCT",
    "She/PRON felt/VERB a/DET cold/NOUN wind/NOUN ./PUNCT",
    "He/PRON had/VERB a/DET bad/ADJ cold/NOUN ./PUNCT",
    "The/DET water/NOUN was/AUX cold/ADJ ./PUNCT",
    "They/PRON water/VERB the/DET plants/NOUN every/DET day/NOUN ./PUNCT",
    "The/DET sun/NOUN rose/VERB over/ADP the/DET hills/NOUN ./PUNCT",
    "She/PRON gave/VERB him/PRON a/DET red/ADJ rose/NOUN ./PUNCT",
    "We/PRON left/VERB the/DET house/NOUN early/ADV ./PUNCT",
    "Turn/VERB left/ADV at/ADP the/DET bridge/NOUN ./PUNCT",
    "The/DET train/NOUN was/AUX late/ADJ again/ADV ./PUNCT",
    "They/PRON train/VERB the/DET horses/NOUN in/ADP the/DET field/NOUN ./PUNCT",
    "Now/ADV ,/PUNCT the/DET door/NOUN is/AUX open/ADJ !/PUNCT",
    "Open/VERB the/DET window/NOUN now/ADV ./PUNCT",
    "Where/ADV did/AUX you/PRON put/VERB the/DET keys/NOUN ?/PUNCT",
    "Is/AUX the/DET shop/NOUN open/ADJ today/ADV ?/PUNCT",
    "We/PRON shop/VERB at/ADP the/DET market/NOUN on/ADP Sundays/PROPN ./PUNCT",
    "The/DET fish/NOUN swam/VERB under/ADP the/DET boat/NOUN ./PUNCT",
    "They/PRON fish/VERB in/ADP the/DET lake/NOUN every/DET summer/NOUN ./PUNCT",
    "He/PRON signed/VERB the/DET letter/NOUN and/CCONJ sent/VERB it/PRON ./PUNCT",
    "The/DET dogs/NOUN bark/VERB at/ADP night/NOUN ./PUNCT",
    "The/DET bark/NOUN of/ADP the/DET tree/NOUN was/AUX rough/ADJ ./PUNCT",
    "She/PRON will/AUX stay/VERB for/ADP dinner/NOUN ./PUNCT",
    "I/PRON want/VERB your/PRON help/NOUN ./PUNCT",
    "Thank/VERB you/PRON for/ADP your/PRON help/NOUN ./PUNCT",
    "Two/NUM men/NOUN and/CCONJ a/DET dog/NOUN walked/VERB home/ADV ./PUNCT",
    "The/DET last/ADJ bus/NOUN leaves/VERB at/ADP ten/NUM ./PUNCT",
    "The/DET leaves/NOUN fell/VERB from/ADP the/DET trees/NOUN ./PUNCT",
    "He/PRON is/AUX always/ADV very/ADV kind/ADJ ./PUNCT",
    "What/PRON kind/NOUN of/ADP music/NOUN do/AUX you/PRON like/VERB ?/PUNCT",
    "It/PRON looks/VERB like/ADP rain/NOUN ./PUNCT",
    "It/PRON will/AUX rain/VERB tomorrow/ADV ./PUNCT",
    "The/DET kids/NOUN laughed/VERB and/CCONJ the/DET parents/NOUN smiled/VERB ./PUNCT",
    "A/DET small/ADJ boat/NOUN crossed/VERB the/DET lake/NOUN slowly/ADV ./PUNCT",
    "Nobody/PRON saw/VERB the/DET thief/NOUN ./PUNCT",
    "The/DET room/NOUN was/AUX dark/ADJ but/CCONJ warm/ADJ ./PUNCT",
    "You/PRON should/AUX close/VERB the/DET door/NOUN ./PUNCT",
    "The/DET shop/NOUN is/AUX close/ADJ to/ADP the/DET station/NOUN ./PUNCT",
]


def pos_rows(n_generated: int = 360, seed: int = 0) -> list[tuple[str, str]]:
    """``(text, labels)`` rows: template sentences (10 templates in turn) then the hand-written ones."""
    rng = random.Random(seed)
    rows, seen = [], set()
    k = 0
    while len(rows) < n_generated:
        pairs = _template(rng, k % 10) + [(".", "PUNCT")]
        k += 1
        pairs[0] = (cap(pairs[0][0]), pairs[0][1])
        text = " ".join(w for w, _ in pairs)
        if text in seen:
            continue
        seen.add(text)
        rows.append((text, " ".join(t for _, t in pairs)))
    for line in HAND_WRITTEN:
        pairs = [item.rsplit("/", 1) for item in line.split()]
        rows.append((" ".join(w for w, _ in pairs), " ".join(t for _, t in pairs)))
    return rows


# --- numbers (labels come from a rule in the loader) -----------------------------------------
def number_rows(n: int = 300, seed: int = 1) -> list[str]:
    """Sentences with numbers written as digits and as words, among ordinary words."""
    rng = random.Random(seed)
    number_words = "one two three four five six seven eight nine ten eleven twelve twenty thirty hundred".split()
    things = "apples books chairs letters birds cars boxes coins tickets pages songs houses".split()
    templates = [
        lambda: f"In {rng.randint(1800, 2024)} the {rng.choice(NOUN_PLACE)} was {rng.choice(['closed', 'opened', 'built', 'painted'])} .",
        lambda: f"She bought {rng.randint(2, 99)} {rng.choice(things)} and {rng.choice(number_words)} {rng.choice(things)} .",
        lambda: f"The train leaves at {rng.randint(1, 12)} and arrives at {rng.randint(1, 12)} .",
        lambda: f"{cap(rng.choice(number_words))} {rng.choice(NOUN_PLURAL)} {rng.choice(V_INTR_PAST)} {rng.choice(ADP)} the {rng.choice(NOUN_PLACE)} .",
        lambda: f"The {rng.choice(NOUN_THING)} costs {rng.randint(1, 500)} dollars .",
        lambda: f"Room {rng.randint(100, 999)} is on floor {rng.choice(number_words)} .",
        lambda: f"We walked {rng.choice(number_words)} miles to the {rng.choice(NOUN_PLACE)} .",
        lambda: f"About {rng.randint(10, 5000)} people {rng.choice(['came', 'waited', 'danced', 'sang'])} in the {rng.choice(NOUN_PLACE)} .",
        lambda: f"The {rng.choice(ADJ)} {rng.choice(NOUN_AGENT)} is {rng.randint(2, 90)} years old .",
        lambda: f"{rng.choice(PERSON)} read {rng.choice(number_words)} {rng.choice(things)} in {rng.randint(2, 30)} days .",
    ]
    rows, seen = [], set()
    while len(rows) < n:
        text = rng.choice(templates)()
        if text not in seen:
            seen.add(text)
            rows.append(text)
    return rows


# --- true / false statements (sentence level) -------------------------------------------------
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens", "Portugal": "Lisbon",
    "Austria": "Vienna", "Poland": "Warsaw", "Norway": "Oslo", "Sweden": "Stockholm", "Ireland": "Dublin",
    "Canada": "Ottawa", "Kenya": "Nairobi", "Peru": "Lima", "Cuba": "Havana", "Thailand": "Bangkok",
    "Turkey": "Ankara", "Hungary": "Budapest", "Finland": "Helsinki", "Denmark": "Copenhagen",
    "Belgium": "Brussels", "England": "London", "Argentina": "Buenos Aires", "Chile": "Santiago",
    "Mexico": "Mexico City", "India": "New Delhi",
}
ANIMALS = {
    "dog": "mammal", "cat": "mammal", "horse": "mammal", "cow": "mammal", "whale": "mammal", "lion": "mammal",
    "eagle": "bird", "sparrow": "bird", "owl": "bird", "penguin": "bird", "parrot": "bird", "crow": "bird",
    "shark": "fish", "salmon": "fish", "trout": "fish", "tuna": "fish", "cod": "fish",
    "snake": "reptile", "lizard": "reptile", "crocodile": "reptile", "turtle": "reptile",
    "ant": "insect", "bee": "insect", "beetle": "insect", "butterfly": "insect", "fly": "insect",
}
NUMBER_NAMES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen".split()


def facts_rows(seed: int = 2) -> list[tuple[str, str]]:
    """True and false statements in equal numbers; every answer word appears in both classes."""
    rng = random.Random(seed)
    rows = []
    countries = list(CAPITALS)
    for country, capital in CAPITALS.items():
        rows.append((f"The capital of {country} is {capital}.", "true"))
        for wrong in rng.sample([c for c in countries if c != country], 2):
            rows.append((f"The capital of {country} is {CAPITALS[wrong]}.", "false"))
        rows.append((f"{capital} is a city in {country}.", "true"))
    classes = sorted(set(ANIMALS.values()))
    for animal, kind in ANIMALS.items():
        art = "An" if animal[0] in "aeiou" else "A"
        rows.append((f"{art} {animal} is a {kind}.", "true"))
        wrong = rng.choice([c for c in classes if c != kind])
        rows.append((f"{art} {animal} is a {wrong}.", "false"))
    for _ in range(70):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        true_sum = a + b
        shown = true_sum if rng.random() < 0.5 else rng.choice([s for s in range(2, 19) if s != true_sum])
        rows.append((f"{cap(NUMBER_NAMES[a])} plus {NUMBER_NAMES[b]} is {NUMBER_NAMES[shown]}.", "true" if shown == true_sum else "false"))
    unique = list(dict.fromkeys(rows))
    rng.shuffle(unique)
    return unique


def main() -> None:
    with open(HERE / "pos.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "labels"])
        writer.writerows(pos_rows())
    with open(HERE / "number.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([r] for r in number_rows())
    with open(HERE / "facts.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(facts_rows())


if __name__ == "__main__":
    main()
