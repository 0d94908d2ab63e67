"""The shared world: clause frames, domains, products, aspects, facts, openers, closers.

Nothing here carries sentiment, so both lexicon parts share it all. Templates hold
{slots}: the clause frames are filled by the grammar's renderer, the facts and openers
by the planner (see NAMED_SLOTS for the slot syntax).
"""
from dataclasses import dataclass

from .lexicon import BOOSTERS, DOWNTONERS, HEDGES, NEGATORS, VERB_BOOSTERS


# -------------------------------------------------------------------------- clause frames (shared)
# {target} is what is judged ("the sound", "this kettle"), {be} is/are, {pron} it/they,
# {phrase} the opinion ("not very good"), {a_phrase} the same with its article.

CLAUSE_FRAMES = ("{target} {be} {phrase}",               # also used inside a contrast
                 "{target} {be} honestly {phrase}",
                 "I found {target} {phrase}")
ASPECT_FRAMES = CLAUSE_FRAMES + ("for me, {target} {be} {phrase}",
                                 "as for {target}, {pron} {be} {phrase}",
                                 "in my experience, {target} {be} {phrase}")
PRODUCT_FRAMES = ("overall, {target} {be} {phrase}",
                  "in short, {target} {be} {phrase}")
# In attributive frames the target is the bare noun ("an excellent kettle"); never negated.
ATTRIBUTIVE_FRAMES = ("all in all, {a_phrase} {target}",
                      "in the end, {a_phrase} {target}")
VERB_FRAMES = ("I {phrase} {target}",                  # also used inside a contrast
               "I {phrase} {target}, to be honest")
MINOR_FRAMES = ("{target} {be} {phrase}, though",
                "admittedly, {target} {be} {phrase}")
CLOSER_FRAME = "{phrase}"


# ----------------------------------------------------------------------------- the world (shared)

# Named lists for {weekday}-style slots in the templates below. A template slot may also
# be "{a|b|c}" (pick one) or "{10-99}" (an integer in that range).
NAMED_SLOTS = {
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "month": ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"),
    "relative": ("sister", "brother", "mum", "dad", "son", "daughter", "partner", "wife",
                 "husband", "flatmate", "grandmother", "neighbour"),
    "city": ("Leeds", "Lyon", "Porto", "Bristol", "Hamburg", "Dublin", "Glasgow", "Seville"),
    "author": ("Maria Lind", "Tom Okafor", "Ines Duarte", "Jonah Pike", "Ruth Castell",
               "Omar Haddad", "Lena Voss", "Sam Whitlow"),
}


@dataclass(frozen=True)
class Domain:
    name: str
    products: tuple    # (noun, plural, facts true of that product only)
    names: tuple       # templates for one product's own name
    prep: str          # joins an aspect to a name: "the sound on the Auralis Q30"
    aspects: tuple     # (aspect, plural)
    facts: tuple       # sentiment-free sentences about any product of the domain
    openers: tuple     # how the reviewer came to the product


# Facts and openers that fit any physical product. {It}/{it}/{s}/{is}/{has} agree with
# a singular or plural product ("It comes" / "They come"); {this} is "this kettle".
_GOODS_FACTS = (
    "I ordered {it} on a {weekday}.",
    "{It} arrived {two|three|four|five} days later.",
    "I have had {it} for {two|three|four|six} weeks now.",
    "I have used {it} {twice|three times|every day|most evenings} so far.",
    "I paid {20-240} dollars for {it}.",
    "{It} came in a plain cardboard box.",
    "{It} come{s} in {two|three|four|five} colours.",
)
_GOODS_OPENERS = (
    "Bought {this} for my {relative}.",
    "I got {this} as a gift from my {relative}.",
    "I bought {this} to replace an older one.",
    "My {relative} picked {this} out for me.",
    "Ordered {this} in the {month} sale.",
)

DOMAINS = (
    Domain(
        name="electronics",
        products=(("headphones", True, ("They fold flat for travel.",)),
                  ("earbuds", True, ("Each bud weighs about {4-7} grams.",)),
                  ("portable speaker", False, ("It is about the size of a water bottle.",))),
        names=("the {Auralis|Zentro|Kobalt|Veyra|Sonex|Nordtone|Halvex} {Q|X|S|V}{10-99}",),
        prep="on",
        aspects=(("sound", False), ("bass", False), ("battery life", False),
                 ("microphone", False), ("controls", True), ("Bluetooth connection", False),
                 ("build quality", False), ("charging cable", False), ("volume", False),
                 ("companion app", False), ("carrying case", False)),
        facts=_GOODS_FACTS + (
            "The battery is rated for {12-40} hours.",
            "{It} charge{s} over USB-C.",
            "{It} use{s} Bluetooth {5.0|5.2|5.3}.",
            "I mostly use {it} on the train.",
            "The box includes a cable and a small pouch.",
            "{It} connect{s} to my phone and my laptop.",
        ),
        openers=_GOODS_OPENERS + ("I needed something for the gym.",
                                  "My old set stopped working in {month}."),
    ),
    Domain(
        name="kitchen",
        products=(("kettle", False, ("It holds {1.2|1.5|1.7} litres.",)),
                  ("toaster", False, ("It takes {two|four} slices at a time.",)),
                  ("blender", False, ("The jug holds {1.2|1.5|2} litres.",)),
                  ("coffee machine", False, ("The water tank holds {1.2|1.5|1.8} litres.",)),
                  ("air fryer", False, ("The basket holds {3|4|5.5} litres.",))),
        names=("the {Brevik|Kitchora|Melbrook|Ovenna|Caldera|Hollins|Tessaro} "
               "{KT|HM|BX|CM}-{100-990}",),
        prep="on",
        aspects=(("lid", False), ("handle", False), ("buttons", True), ("build quality", False),
                 ("noise level", False), ("display", False), ("power cable", False),
                 ("design", False), ("timer", False), ("base", False),
                 ("instruction manual", False)),
        facts=_GOODS_FACTS + (
            "{It} {has} {three|four|five|six} power settings.",
            "{It} {is} rated at {1200-2400} watts.",
            "The cable is about {70-120} centimetres long.",
            "{It} fit{s} under my kitchen cupboards.",
            "I use {it} {once|twice|three times} a day.",
        ),
        openers=_GOODS_OPENERS + ("We needed a new one for the office kitchen.",
                                  "I moved into a new flat in {month}."),
    ),
    Domain(
        name="clothing",
        products=(("rain jacket", False, ("It has a hood that rolls into the collar.",)),
                  ("jeans", True, ("They have five pockets.",)),
                  ("running shoes", True, ("They weigh about {240-320} grams each.",)),
                  ("wool jumper", False, ()),
                  ("hoodie", False, ()),
                  ("winter coat", False, ("It has an inside pocket for a phone.",))),
        names=("the {Northpeak|Loomwell|Tidewear|Urbanthread|Kestrel|Fernhill} "
               "{Summit|Trail|Metro|Coastline|Ridge|Harbour|Fell}",),
        prep="on",
        aspects=(("fit", False), ("fabric", False), ("stitching", False), ("colour", False),
                 ("sizing", False), ("material", False), ("pockets", True), ("seams", True),
                 ("zip", False), ("cut", False)),
        facts=_GOODS_FACTS + (
            "I ordered a size {S|M|L|XL|10|12|14}.",
            "I am {155-195} cm tall, for reference.",
            "{It} {has} been through the wash {twice|three times|four times}.",
            "The label says {60|70|80|100} percent cotton.",
            "I usually wear a size {S|M|L}.",
        ),
        openers=_GOODS_OPENERS + ("I needed something for walking to work.",
                                  "I was packing for a trip to {city}."),
    ),
    Domain(
        name="furniture",
        products=(("sofa", False, ("It seats {two|three|four} people.",)),
                  ("desk", False, ("It has {two|three} drawers on the left.",)),
                  ("bookshelf", False, ("It has {four|five|six} shelves.",)),
                  ("office chair", False, ("The seat goes up to {50-60} cm.",)),
                  ("bed frame", False, ()),
                  ("dining table", False, ("It seats {four|six|eight} people.",))),
        names=("the {Lindholm|Oakhaven|Nordby|Fjelda|Hartwood|Brantley} "
               "{Alva|Brisk|Corda|Delta|Elm|Fjord|Grove}",),
        prep="on",
        aspects=(("assembly instructions", True), ("cushions", True), ("frame", False),
                 ("finish", False), ("drawers", True), ("legs", True), ("upholstery", False),
                 ("wood", False), ("screws", True), ("height", False)),
        facts=_GOODS_FACTS + (
            "It took us {20-120} minutes to put together.",
            "{It} came in {two|three|four} boxes.",
            "{It} {is} {60-220} cm wide.",
            "{It} hold{s} up to {50-150} kilograms.",
            "The delivery team carried {it} upstairs.",
            "{It} {is} made of {oak|pine|birch|walnut} veneer.",
        ),
        openers=_GOODS_OPENERS + ("Bought {this} for our new flat.",
                                  "We ordered {this} for the spare room."),
    ),
    Domain(
        name="hotels",
        products=(("hotel", False, ()),),
        names=("the {Harbour View|Old Mill|Grey Heron|Linden Court|Bay Tree|Kingsgate|"
               "Riverside|Marlow House|Castle Street} Hotel",),
        prep="at",
        aspects=(("room", False), ("staff", True), ("breakfast", False), ("bed", False),
                 ("location", False), ("bathroom", False), ("view", False), ("pool", False),
                 ("Wi-Fi", False), ("check-in", False), ("shower", False), ("parking", False)),
        facts=(
            "We stayed {two|three|four|five} nights in {month}.",
            "Our room was on the {second|third|fourth|fifth} floor.",
            "The hotel has {40-180} rooms.",
            "Breakfast is served from {6|7} to {10|11}.",
            "It is a {5-20} minute walk from the station.",
            "We travelled with {our two children|my partner|a group of friends|my parents}.",
            "Parking costs {10-25} dollars a night.",
            "Check-out is at {10|11} in the morning.",
            "I booked through the website.",
            "It was our {first|second|third} visit.",
        ),
        openers=("We stayed here for my {relative}'s birthday.",
                 "Booked this hotel for a work trip to {city}.",
                 "We stopped here for one night on the way to {city}.",
                 "We stayed at {name} in {month}."),
    ),
    Domain(
        name="restaurants",
        products=(("restaurant", False, ()),),
        names=("{the Copper Pot|Casa Lima|the Blue Lantern|Trattoria Enzo|Saffron Street|"
               "the Salt Shed|Little Lisbon|the Olive Press|Noodle Yard|the Corner Table}",),
        prep="at",
        aspects=(("food", False), ("service", False), ("waiter", False), ("desserts", True),
                 ("portions", True), ("wine list", False), ("menu", False), ("prices", True),
                 ("atmosphere", False), ("coffee", False), ("starters", True),
                 ("seating", False)),
        facts=(
            "We booked a table for {two|three|four|six}.",
            "We went on a {weekday} evening.",
            "The bill came to {40-160} dollars for {two|three|four} of us.",
            "They take bookings online.",
            "It is open until {10|11} at night.",
            "The menu changes every {week|month|season}.",
            "We ordered the {fish of the day|set menu|lamb|mushroom risotto|chicken curry}.",
            "It was our {first|second|third} visit.",
        ),
        openers=("We had dinner here on a {weekday}.",
                 "Came here for lunch with my {relative}.",
                 "We went to {name} for my {relative}'s birthday.",
                 "A colleague suggested this place."),
    ),
    Domain(
        name="apps",
        products=(("app", False, ()),),
        names=("{Notely|TaskNest|Budgetoo|FitTrack|PhotoFold|MapMate|Calendo|Sleepr}",),
        prep="in",
        aspects=(("interface", False), ("sync", False), ("notifications", True),
                 ("search", False), ("dark mode", False), ("customer support", False),
                 ("login process", False), ("widgets", True), ("offline mode", False),
                 ("updates", True), ("subscription price", False), ("backup feature", False)),
        facts=(
            "I use it on {an Android phone|an iPad|my laptop|two devices}.",
            "I am on version {2-9}.{0-9}.",
            "The subscription costs {3-12} dollars a month.",
            "I installed it {two|three|five|six} weeks ago.",
            "It syncs with my calendar.",
            "It needs about {80-400} MB of space.",
            "I use it {every morning|at work|a few times a week}.",
        ),
        openers=("I switched to {name} from another app.",
                 "I have been using {name} since {month}.",
                 "Downloaded this for my {relative}'s tablet.",
                 "My {relative} set this up for me."),
    ),
    Domain(
        name="books",
        products=(("novel", False, ()), ("thriller", False, ()), ("memoir", False, ())),
        names=("{The Glass|The Salt|The Paper|The Silver|The Amber|The Winter|The Iron} "
               "{Orchard|Harbour|Garden|Tower|River|Lantern|Road}",),
        prep="of",
        aspects=(("plot", False), ("characters", True), ("ending", False), ("writing", False),
                 ("pacing", False), ("dialogue", False), ("cover", False),
                 ("opening chapter", False), ("twist", False), ("audiobook narration", False)),
        facts=(
            "It is {220-640} pages long.",
            "I read it over {two|three|four} evenings.",
            "It is the {second|third} book in a series.",
            "I borrowed it from my local library.",
            "I had not read anything by {author} before.",
            "I read the paperback edition.",
            "It was first published in {1998-2023}.",
        ),
        openers=("I read this over a long weekend.",
                 "Picked this up at the airport.",
                 "My book club chose this for {month}.",
                 "My {relative} lent me {name}."),
    ),
)

# Every product noun, with its domain, whether it is plural and the facts true of it
# alone: PRODUCTS["kettle"] -> (the kitchen Domain, False, (...)). No noun is in two domains.
PRODUCTS = {noun: (d, plural, facts) for d in DOMAINS for noun, plural, facts in d.products}

# Closing remarks that carry no opinion at all.
NEUTRAL_CLOSERS = ("Will update this review in a few weeks.",
                   "That is all for now.",
                   "Just sharing my experience.",
                   "More thoughts after a month of use.",
                   "Hope this helps someone.")


def shared_phrases():
    """Every piece of shared (sentiment-free) text, for checking it holds no lexicon item."""
    phrases = [w for words in BOOSTERS.values() for w in words]
    phrases += list(VERB_BOOSTERS + DOWNTONERS + HEDGES + NEUTRAL_CLOSERS)
    phrases += [w for words in NEGATORS.values() for w in words]
    phrases += list(CLAUSE_FRAMES + ASPECT_FRAMES + PRODUCT_FRAMES + ATTRIBUTIVE_FRAMES
                    + VERB_FRAMES + MINOR_FRAMES)
    phrases += [w for words in NAMED_SLOTS.values() for w in words]
    for d in DOMAINS:
        phrases += list(d.names + d.facts + d.openers) + [d.prep]
        phrases += [a for a, _ in d.aspects]
        for noun, _, facts in d.products:
            phrases += [noun, *facts]
    return phrases
