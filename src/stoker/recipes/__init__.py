"""stoker.recipes"""
