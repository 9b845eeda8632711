# Pronunciation lexicon for examples/aesop.md (voicebatch render examples/aesop.md --lexicon examples/aesop.lex)
# word = replacement        whole words; a lowercase key matches any case, a key with a capital only itself
# /regex/flags = replacement flag i ignores case; \1 and \g<name> refer to groups
# word = [[phonemes]]        espeak-ng phonemes, for piper only
Aesop = EE-sop
/\btortoise\b/i = tortus
tortoises = tortuses
