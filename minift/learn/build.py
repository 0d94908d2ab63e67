"""(being written)"""
EXERCISES = []
